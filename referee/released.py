"""Released harness versions, as file hashes: what "byte-identical to a release" means to the verifier.

A release is `{path: sha256}` over the files `harness package` copies from the harness project:
core/, harness/, scripts/, task1/, task2/ (walked with the package's own filter: no caches, no dot files,
no compiled files), pyproject.toml, requirements.lock and run_tests.sh. In a package,

- core/, harness/, scripts/, run_tests.sh and pyproject.toml must equal one release's files, all of them from
  the same release (pyproject.toml compared without its dependency lists, which a submitter may
  extend; `pyproject_key` is that comparison's hash); nothing may be added or left out;
- task1/ and task2/ are the competitor's: a file equal to a release's file at the same path is the
  organizers' reference code, every other file is the competitor's own and gets the strict code rules.

Where the lists come from:

- `current()`: this verifier's own release, computed when it runs from the installed harness, task1
  and task2 packages and, for scripts/ and the top-level files, the project they were installed from
  (an editable install, as scripts/setup_env.sh makes). Nothing is hard-coded, so the list stays
  right as the harness changes.
- `shipped()`: earlier releases, one JSON file each in referee/releases/ (`{"name", "commit",
  "files"}`), written by maintainers with `python -m referee.released --git REF` at release time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.package_format import CODE_DIRS, skipped

RELEASED_DIRS = CODE_DIRS  # a release is the code a package holds
RELEASED_FILES = ("pyproject.toml", "requirements.lock", "run_tests.sh")
TRUSTED_DIRS = ("core", "harness", "scripts")  # must equal a release
TRUSTED_FILES = ("pyproject.toml", "run_tests.sh")
REFERENCE_DIRS = ("task1", "task2")  # the competitor's to change
PYPROJECT_KEY = "pyproject.toml#without-dependencies"
SHIPPED_DIR = Path(__file__).resolve().parent / "releases"


@dataclass(frozen=True)
class Release:
    name: str
    files: dict  # path -> sha256 (and PYPROJECT_KEY -> hash of pyproject.toml without its dependencies)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _toml(text: str) -> dict | None:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # without a TOML reader, pyproject.toml is compared byte for byte (stricter)
        return None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return None


def pyproject_key(data: bytes) -> str | None:
    """Hash of pyproject.toml with project.dependencies and project.optional-dependencies removed (the
    whole file's hash where Python has no TOML reader; None when it is not TOML): two files with equal
    keys build and install the same way."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    doc = _toml(text)
    if doc is None:
        return sha256(data) if sys.version_info < (3, 11) else None
    project = doc.get("project")
    if isinstance(project, dict):
        project.pop("dependencies", None)
        project.pop("optional-dependencies", None)
    return sha256(json.dumps(doc, sort_keys=True, default=str).encode())


def _tree(folder: Path, prefix: str) -> dict[str, str]:
    out = {}
    stack = [folder]
    while stack:
        cur = stack.pop()
        try:
            items = sorted(os.scandir(cur), key=lambda e: e.name)
        except OSError:
            continue
        for ent in items:
            rel = f"{prefix}/{Path(ent.path).relative_to(folder).as_posix()}"
            if ent.is_dir(follow_symlinks=False):
                if not skipped(rel + "/x"):
                    stack.append(Path(ent.path))
            elif ent.is_file(follow_symlinks=False) and not skipped(rel):
                out[rel] = sha256(Path(ent.path).read_bytes())
    return out


def _package_dir(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _project_root(harness_dir: Path) -> Path | None:
    root = harness_dir.parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return root if '\nname = "mmctr-harness"\n' in text else None


def release_from_files(name: str, files: dict[str, bytes | str]) -> Release:
    """A Release from {path: content bytes} (or {path: sha256 hex} for files whose content is not needed)."""
    out = {}
    for rel, content in files.items():
        out[rel] = content if isinstance(content, str) else sha256(content)
        if rel == "pyproject.toml" and isinstance(content, bytes):
            key = pyproject_key(content)
            if key:
                out[PYPROJECT_KEY] = key
    return Release(name, out)


@functools.lru_cache(maxsize=1)
def current() -> Release:
    """This verifier's own release, computed from the installed code (found, not imported: the referee
    stands below the pipeline and runs none of it)."""
    files: dict[str, bytes | str] = {}
    harness_dir = _package_dir("harness") or Path(__file__).resolve().parents[1] / "harness"
    for name in ("core", "harness", "task1", "task2"):
        folder = harness_dir if name == "harness" else _package_dir(name)
        if folder is not None:
            files.update(_tree(folder, name))
    root = _project_root(harness_dir)
    if root is not None:
        if (root / "scripts").is_dir():
            files.update(_tree(root / "scripts", "scripts"))
        for rel in RELEASED_FILES:
            if (root / rel).is_file():
                files[rel] = (root / rel).read_bytes()
    return release_from_files(f"{verifier_version()} (this verifier)", files)


def verifier_version() -> str:
    """The installed release's version (the mmctr-harness distribution's metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmctr-harness")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def shipped() -> tuple[Release, ...]:
    """Earlier releases shipped as data (referee/releases/*.json), newest name last."""
    out = []
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            files = doc["files"]
            if isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
                out.append(Release(str(doc.get("name") or path.stem), dict(files)))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a broken list is a maintainer's problem; the current release still applies
    return tuple(out)


def releases() -> list[Release]:
    """Every release the verifier accepts, this verifier's own first."""
    return [current(), *shipped()]


def reference_hashes() -> dict[str, set[str]]:
    """path -> the sha256 values any release has for it: a file of task1/ or task2/ with one of them is
    the organizers' reference code."""
    out: dict[str, set[str]] = {}
    for r in releases():
        for rel, digest in r.files.items():
            out.setdefault(rel, set()).add(digest)
    return out


# ---------------------------------------------------------------------------------------------
# maintainers: a release list from a git commit


def from_git(ref: str, repo: Path, name: str | None = None) -> dict:
    """{"name", "commit", "files"} for the release at `ref` of the git repository `repo`."""
    def git(*args, data=None) -> bytes:
        return subprocess.run(["git", "-C", str(repo), *args], input=data, capture_output=True, check=True,
                              timeout=120).stdout

    commit = git("rev-parse", ref).decode().strip()
    listing = git("ls-tree", "-r", "-z", commit, "--", *RELEASED_DIRS, *RELEASED_FILES).split(b"\0")
    blobs = {}
    for line in listing:
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        mode, kind, blob = meta.split()
        rel = path.decode("utf-8")
        if kind == b"blob" and mode != b"120000" and not skipped(rel):
            blobs[rel] = blob.decode()
    files = {rel: git("cat-file", "blob", blob) for rel, blob in blobs.items()}
    version = ((_toml(files.get("pyproject.toml", b"").decode("utf-8")) or {}).get("project") or {}).get("version")
    name = name or f"{version or '0'}+{commit[:7]}"
    return {"name": name, "commit": commit, "files": release_from_files(name, files).files}


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m referee.released",
                                     description="Write the hash list of a released harness commit into "
                                                 "referee/releases/NAME.json.")
    parser.add_argument("--git", required=True, metavar="REF", help="the released commit or tag")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="the git repository")
    parser.add_argument("--name", default=None, help="release name [default: VERSION+SHORT_COMMIT]")
    args = parser.parse_args(argv)
    try:
        doc = from_git(args.git, Path(args.repo), args.name)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"error: git failed for {args.git} in {args.repo}: {e}", file=sys.stderr)
        return 2
    out = SHIPPED_DIR / f"{doc['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(doc['files'])} entries, commit {doc['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
