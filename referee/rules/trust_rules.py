"""Deny by default: every file of a package is where the layout puts it, and everything that is not
the competitor's own (task1/, task2/, the configs, the outputs) is the released harness, byte for byte.

- PKG-LAYOUT: files only in the places `harness package` writes (no extra top-level files such as a
  sitecustomize.py, no code among the outputs, only source and small text in task1/ and task2/),
  requirements.lock pins plain `name==version` lines (no URLs, indexes or options), and reproduce.sh
  and the manifest's reproduce steps are exactly what the verifier's own `harness package` code
  writes for this package's track, Task 1 profile and seed, and device.
- PKG-RELEASED-CODE: harness/, scripts/, run_tests.sh and pyproject.toml (without its dependency
  lists) equal one released harness version (referee.released): nothing changed, added or
  missing. The package's code imports these files when it runs, so a change there is a change to the
  submission that no rule about task1/ and task2/ would see.
"""

from __future__ import annotations

import re

from core.errors import error
from referee.rules.registry import rule
from referee.inspection.context import MANIFEST, printable
from referee.released import TRUSTED_DIRS

TOP_FILES = {"prediction.csv", "prediction.zip", MANIFEST, "REPRODUCE.md", "LICENSE", "reproduce.sh",
             "pyproject.toml", "requirements.lock", "run_tests.sh"}
CONFIGS = {"configs/task1.json", "configs/task2.json"}
OUTPUT_FOLDERS = ("task1", "task2", "prediction")
CODE_SUFFIXES = (".py", ".md", ".txt", ".json", ".yaml", ".yml", ".toml", ".cfg")
EXECUTABLE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pth", ".so", ".pyd", ".dll", ".dylib", ".sh", ".exe", ".bat")
LOCK_LINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+"
                       r"(\s*;\s*[^@\\]+?)?(\s+--hash=sha(256|384|512):[0-9a-f]+)*")
DEPENDENCY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]+\])?\s*([<>=!~]=?\s*[A-Za-z0-9.*+!_-]+"
                        r"\s*(,\s*[<>=!~]=?\s*[A-Za-z0-9.*+!_-]+\s*)*)?(\s*;\s*[^@]+)?")
MAX_LOCK_BYTES = 1024 * 1024


def place_problem(rel: str) -> str | None:
    """Why `rel` is not a place of the package layout (None when it is)."""
    parts = rel.split("/")
    top = parts[0]
    if len(parts) == 1:
        return None if rel in TOP_FILES else "not a file of the package layout"
    if top in TRUSTED_DIRS:
        return None  # PKG-RELEASED-CODE compares them with a release
    if top in ("task1", "task2"):
        if not rel.endswith(CODE_SUFFIXES):
            return f"a {printable(parts[-1].rsplit('.', 1)[-1] if '.' in parts[-1] else 'suffix-less')} file " \
                   f"in the code folders, which hold Python source and small text files only"
        return None
    if top == "configs":
        return None if rel in CONFIGS else "configs/ holds task1.json and task2.json only"
    if top == "outputs":
        if len(parts) != 3 or parts[1] not in OUTPUT_FOLDERS:
            return "outputs/ holds task1/, task2/ and prediction/ and no deeper folders"
        if rel.lower().endswith(EXECUTABLE_SUFFIXES):
            return "code among the outputs: code belongs in task1/ or task2/"
        return None
    return "not a folder of the package layout"


def lock_problems(text: str) -> list[str]:
    """requirements.lock: pinned `name==version` lines only (with markers and hashes)."""
    out = []
    joined = text.replace("\\\n", " ")
    for i, line in enumerate(joined.splitlines(), 1):
        body = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not body:
            continue
        if body.startswith("-") or "://" in body or "@" in body or not LOCK_LINE.fullmatch(body):
            out.append(f"line {i} {printable(body, 80)!r} is not a pinned name==version requirement (no options, "
                       "indexes, URLs or paths)")
    return out


def pyproject_problems(data: bytes) -> list[str]:
    from referee.released import _toml

    try:
        doc = _toml(data.decode("utf-8"))
    except UnicodeDecodeError:
        doc = None
    if doc is None:
        import sys

        return [] if sys.version_info < (3, 11) else ["not readable TOML"]  # 3.10: compared byte for byte
    project = doc.get("project") if isinstance(doc.get("project"), dict) else {}
    deps = list(project.get("dependencies") or [])
    for extra in (project.get("optional-dependencies") or {}).values():
        deps += list(extra) if isinstance(extra, list) else [extra]
    out = []
    for dep in deps:
        if not isinstance(dep, str) or "@" in dep or "://" in dep or not DEPENDENCY.fullmatch(dep.strip()):
            out.append(f"dependency {printable(dep, 80)!r} is not a plain `name[extras] version-specifier` "
                       "(no direct URLs or paths)")
    return out


def trusted_steps(ctx) -> tuple[list[dict] | None, str]:
    """The reproduce steps the verifier's own `harness package` writes for this package, and its device:
    this release's (predict on the CPU), or, for a package whose manifest has them, the earlier releases'
    (predict on the training device)."""
    from core.package_format import reproduce_steps

    run = ctx.run_record() or {}
    device = "cuda" if str(run.get("device", "cpu")).startswith("cuda") else "cpu"
    if ctx.track not in (1, 2, 3):
        return None, device
    task1 = ctx.task1_record() if ctx.track in (1, 3) else None
    if ctx.track in (1, 3) and task1 is None:
        return None, device
    steps = reproduce_steps(ctx.track, task1, device)
    earlier = reproduce_steps(ctx.track, task1, device, predict_device="{device}")
    if ctx.manifest is not None and ctx.section("reproduce").get("steps") == earlier:
        return earlier, device
    return steps, device


@rule("PKG-LAYOUT", "every file is where `harness package` puts it (no extra top-level files, no code among "
      "the outputs, only source and text in task1/ and task2/); requirements.lock pins plain versions; "
      "reproduce.sh and the manifest's reproduce steps are what the verifier's own packaging code writes")
def check_layout(ctx):
    rid = "PKG-LAYOUT"
    out = []
    for rel in ctx.files():
        why = place_problem(rel)
        if why:
            out.append(error(rid, f"{why}; remove it or re-run `harness package`", rel))
    if ctx.is_file("requirements.lock"):
        try:
            text = ctx.read_bytes("requirements.lock", MAX_LOCK_BYTES).decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            out.append(error(rid, f"cannot be read ({type(e).__name__})", "requirements.lock"))
        else:
            out += [error(rid, msg, "requirements.lock") for msg in lock_problems(text)[:10]]
    if ctx.is_file("pyproject.toml"):
        try:
            data = ctx.read_bytes("pyproject.toml", MAX_LOCK_BYTES)
        except OSError as e:
            out.append(error(rid, f"cannot be read ({printable(str(e), 120)})", "pyproject.toml"))
        else:
            out += [error(rid, msg, "pyproject.toml") for msg in pyproject_problems(data)[:10]]
    steps, device = trusted_steps(ctx)
    if steps is None:
        out.append(error(rid, "the reproduce steps cannot be derived: the track is unknown or task1.json is "
                     "missing", MANIFEST))
        return out
    from core.package_format import reproduce_sh

    if ctx.manifest is not None and ctx.section("reproduce").get("steps") != steps:
        out.append(error(rid, "the manifest's reproduce steps are not the ones `harness package` writes for this "
                         "package (--rerun full runs the verifier's, never the manifest's)", MANIFEST))
    if ctx.is_file("reproduce.sh"):
        try:
            text = ctx.read_bytes("reproduce.sh", MAX_LOCK_BYTES)
        except OSError as e:
            out.append(error(rid, f"cannot be read ({printable(str(e), 120)})", "reproduce.sh"))
        else:
            if text != reproduce_sh(steps, device).encode("utf-8"):
                out.append(error(rid, "not the script `harness package` writes for this package's steps: an "
                                 "organizer runs it; re-run `harness package`", "reproduce.sh"))
    return out


def _package_side(ctx) -> dict[str, str]:
    """{path: sha256} of the package's files that must equal a release (plus the pyproject key)."""
    from referee.released import PYPROJECT_KEY, TRUSTED_DIRS, TRUSTED_FILES, pyproject_key

    out = {}
    for rel in ctx.files():
        if rel.split("/")[0] in TRUSTED_DIRS or rel in TRUSTED_FILES:
            out[rel] = ctx.sha256(rel)
    if ctx.is_file("pyproject.toml"):
        key = pyproject_key(ctx.read_bytes("pyproject.toml", MAX_LOCK_BYTES))
        out[PYPROJECT_KEY] = key or "not TOML"
    return out


def release_diff(theirs: dict[str, str], release) -> list[tuple[str, str]]:
    """(path, what differs) between the package's trusted files and one release's."""
    from referee.released import PYPROJECT_KEY, TRUSTED_DIRS, TRUSTED_FILES

    ours = {rel: h for rel, h in release.files.items()
            if rel.split("/")[0] in TRUSTED_DIRS or rel in TRUSTED_FILES or rel == PYPROJECT_KEY}
    out = []
    for rel in sorted(set(theirs) | set(ours)):
        if rel == "pyproject.toml":
            continue  # compared through its key: the dependency lists may differ
        if rel == PYPROJECT_KEY:
            if rel in ours and theirs.get(rel) != ours[rel]:
                out.append(("pyproject.toml", "differs from the release's beyond the dependency lists"))
            continue
        if rel not in theirs:
            out.append((rel, "missing: the release has it"))
        elif rel not in ours:
            out.append((rel, "not part of the release: remove it"))
        elif theirs[rel] != ours[rel]:
            out.append((rel, "differs from the release's file: ship it unchanged"))
    return out


@rule("PKG-RELEASED-CODE", "core/, harness/, scripts/, run_tests.sh and pyproject.toml (less its dependency lists) are "
      "byte-identical to one released harness version: nothing changed, added or missing")
def check_released_code(ctx):
    from referee.released import releases

    rid = "PKG-RELEASED-CODE"
    theirs = _package_side(ctx)
    known = releases()
    scored = [(len(d), i, r, d) for i, r in enumerate(known) for d in [release_diff(theirs, r)]]
    _n, _i, best, diff = min(scored, key=lambda t: (t[0], t[1]))
    out = []
    for rel, why in diff[:30]:
        out.append(error(rid, f"{why} (harness release {best.name}, the closest of {len(known)} known)", rel))
    if len(diff) > 30:
        out.append(error(rid, f"... and {len(diff) - 30} more file(s) that differ from release {best.name}",
                         "harness/"))
    return out
