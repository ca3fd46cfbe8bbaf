"""What the rules look at: a submission folder read without following links, running code or unpickling.

`PackageContext(root, track, data)` walks the folder once with `lstat` (symlinks are recorded, never
followed; the walk is iterative and bounded), loads MANIFEST.json, and offers cached, safe views that
the rules share: files by role (roles come from the layout below, never from the manifest, which the
submitter writes), JSON documents, the Python modules (parsed from their bytes as Python decodes them,
never imported), the Task 2 checkpoint's header, the data root's files. A file is only ever opened
when it is a regular file inside the folder (`O_NOFOLLOW`) within the size limits.

The package layout and its roles are declared once, in core/package_format.py, which the packager
(harness/package.py) writes by.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.challenge import DATASET_DIR, TORCH_TO_SAFETENSORS, TRACK_COLUMNS
from core.package_format import CODE_DIRS, CODE_FILES, FORMAT, LAYOUT, MANIFEST, ROLES, layout_role  # noqa: F401
from referee.inspection import formats
from referee.inspection.pysource import ModuleSource, module_name, scan_source

# the layout and roles are the package format's (core/package_format.py), shared with the packager
MAX_ENTRIES = 20_000  # files and folders walked; more is itself a finding
MAX_DEPTH = 24  # folder nesting walked; deeper folders are a finding and are not descended
MAX_FILE_BYTES = 2 * 1024**3  # one file: the largest legitimate one (a full item_info) is ~100 MB
MAX_TOTAL_BYTES = 8 * 1024**3  # the whole package; over it, no file's content is read
MAX_INFLATE_BYTES = 1024**3  # bytes decompressed from zips and parquet, per package, in all
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_PY_BYTES = 2 * 1024 * 1024


def printable(text, limit: int = 400) -> str:
    """`text` safe to print on a terminal: control and format characters (ANSI escapes, carriage returns,
    bidirectional overrides), surrogates (undecodable file-name bytes) and unassigned code points become
    backslash escapes; the result is cut to `limit` characters."""
    out = []
    for ch in str(text)[:limit]:
        cat = unicodedata.category(ch)
        if ch == "\\":
            out.append("\\\\")
        elif cat[0] == "C" or cat in ("Zl", "Zp"):  # Cc, Cf, Cs, Co, Cn; line/paragraph separators
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(str(text)) > limit else "")


def load_json_bytes(data: bytes):
    """JSON from bytes; ValueError (with a short reason) for anything that is not plain JSON.

    Covers what json.loads raises beyond JSONDecodeError on hostile input: integers over Python's
    digit limit (ValueError), nesting deep enough to exhaust the stack (RecursionError), bad UTF-8.
    """
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(f"{type(e).__name__}: {printable(str(e), 120)}") from None




def unsafe_rel(rel) -> str | None:
    """Why a manifest path is not a plain relative path inside the package (None when it is)."""
    if not isinstance(rel, str) or not rel:
        return "not a path"
    if "\\" in rel or "\x00" in rel:
        return "holds a backslash or NUL"
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        return "is absolute"
    parts = PurePosixPath(rel).parts
    if any(p == ".." for p in parts):
        return "climbs out with '..'"
    if any(p in (".", "") for p in rel.split("/")):
        return "is not normalised"
    return None


@dataclass(frozen=True)
class Entry:
    rel: str
    kind: str  # file | dir | symlink | other
    size: int
    target: str | None = None  # a symlink's target, as written
    nlink: int = 1


class PackageContext:
    """A submission folder as the rules see it. Nothing here executes the submission's code.

    Args:
        root: the submission folder.
        track: 1, 2 or 3 from the command line; None to take the manifest's.
        data: the dataset root (MicroLens_1M_MMCTR layout) for the checks that need it, or None.
        rerun: results of `--rerun predict|full` (see referee.rerun), or None.
        expected_state: the declared class's state signature computed by the caller from code it trusts
            (`harness package` passes the one it built from the packaged code), or None.

    Limits hold before anything is read: the walk stops at MAX_ENTRIES entries and MAX_DEPTH levels,
    a file over MAX_FILE_BYTES (or any file of a package over MAX_TOTAL_BYTES) is never opened, a
    reader's own limit is checked against the file's size before it opens it, and every decompression
    draws on one budget of MAX_INFLATE_BYTES for the whole package.
    """

    def __init__(self, root, track: int | None = None, data=None, rerun: dict | None = None,
                 expected_state: dict | None = None):
        self._cache: dict = {}
        self.root = Path(root)
        self.requested_track = track
        self.data = None if data is None else Path(data)
        self.rerun = rerun
        self.expected_state = expected_state
        self.entries: dict[str, Entry] = {}
        self.walk_truncated = False
        self.too_deep: list[str] = []
        self.unreadable_dirs: list[str] = []
        self.total_bytes = 0
        self.inflate_left = MAX_INFLATE_BYTES
        self._walk()
        self.manifest, self.manifest_error = self._load_manifest()
        manifest_track = self.manifest.get("track") if self.manifest else None
        self.manifest_track = manifest_track if manifest_track in TRACK_COLUMNS and not isinstance(
            manifest_track, bool) else None
        self.track = track if track is not None else self.manifest_track

    # the folder ------------------------------------------------------------------------------
    def _walk(self) -> None:
        """Breadth-first, iterative, bounded: no recursion however deep the folders are nested."""
        count = 0
        queue: list[tuple[str, int]] = [("", 0)]
        while queue:
            rel_dir, depth = queue.pop(0)
            names = []
            try:
                with os.scandir(os.path.join(self.root, rel_dir) if rel_dir else self.root) as it:
                    for ent in it:
                        names.append(ent.name)
                        if count + len(names) > MAX_ENTRIES:
                            break
            except OSError:
                self.unreadable_dirs.append(rel_dir or ".")
                continue
            for name in sorted(names):
                count += 1
                if count > MAX_ENTRIES:
                    self.walk_truncated = True
                    return
                rel = f"{rel_dir}/{name}" if rel_dir else name
                try:
                    st = os.lstat(os.path.join(self.root, rel))
                except (OSError, ValueError):
                    self.entries[rel] = Entry(rel, "other", 0)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    try:
                        target = os.readlink(os.path.join(self.root, rel))
                    except OSError:
                        target = "?"
                    self.entries[rel] = Entry(rel, "symlink", 0, target)
                elif stat.S_ISDIR(st.st_mode):
                    self.entries[rel] = Entry(rel, "dir", 0)
                    if depth + 1 >= MAX_DEPTH:
                        self.too_deep.append(rel)
                    else:
                        queue.append((rel, depth + 1))
                elif stat.S_ISREG(st.st_mode):
                    self.entries[rel] = Entry(rel, "file", st.st_size, nlink=st.st_nlink)
                    self.total_bytes += st.st_size
                else:
                    self.entries[rel] = Entry(rel, "other", 0)

    def memo(self, key: tuple, compute):
        """`compute()` once per package and key, its value kept for every later call: the rules share the
        costly reads (the prediction, the import graph, the trusted model layout) through this."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def files(self) -> list[str]:
        """Regular files, relative paths, sorted (MANIFEST.json included)."""
        if "files" not in self._cache:
            self._cache["files"] = sorted(r for r, e in self.entries.items() if e.kind == "file")
        return self._cache["files"]

    def is_file(self, rel: str | None) -> bool:
        return isinstance(rel, str) and unsafe_rel(rel) is None and rel in self.entries \
            and self.entries[rel].kind == "file"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def size(self, rel: str) -> int:
        return self.entries[rel].size if rel in self.entries else 0

    def _readable(self, rel: str, limit: int | None = None) -> None:
        if not self.is_file(rel):
            raise OSError(f"{printable(rel, 200)} is not a regular file of the package")
        size = self.entries[rel].size
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise OSError(f"the package holds {self.total_bytes:,} bytes, over the {MAX_TOTAL_BYTES:,}-byte limit: "
                          "no file is read")
        if size > MAX_FILE_BYTES:
            raise OSError(f"{size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit per file: not read")
        if limit is not None and size > limit:
            raise OSError(f"{size:,} bytes, over the {limit:,}-byte limit for this kind of file: not read")

    def checked_path(self, rel: str, limit: int | None = None) -> Path:
        """The path of a regular file for a library to read, after the size limits (OSError otherwise)."""
        self._readable(rel, limit)
        return self.root / rel

    def open(self, rel: str):
        """Open a regular file of the package for reading, refusing links (O_NOFOLLOW) and oversized files."""
        self._readable(rel)
        fd = os.open(self.root / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{printable(rel, 200)} is not a regular file of the package")
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def read_bytes(self, rel: str, limit: int | None = None) -> bytes:
        self._readable(rel, limit)
        with self.open(rel) as f:
            data = f.read(-1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise OSError(f"larger than {limit:,} bytes")
        return data

    def head(self, rel: str, n: int = 64) -> bytes:
        with self.open(rel) as f:
            return f.read(n)

    def inflate(self, n: int, what: str) -> None:
        """Draw `n` decompressed bytes from the package's budget; OSError when it would run out."""
        if n < 0 or n > self.inflate_left:
            raise OSError(f"{what}: {n:,} decompressed bytes would exceed the package's budget of "
                          f"{MAX_INFLATE_BYTES:,} ({self.inflate_left:,} left): not read")
        self.inflate_left -= n

    def sha256(self, rel: str) -> str:
        key = ("sha256", rel)
        if key not in self._cache:
            import hashlib

            h = hashlib.sha256()
            with self.open(rel) as f:
                while block := f.read(1 << 20):
                    h.update(block)
            self._cache[key] = h.hexdigest()
        return self._cache[key]

    def read_json(self, rel: str | None) -> tuple[object, str | None]:
        """(document, None) or (None, why it cannot be read)."""
        if rel is None:
            return None, "absent"
        key = ("json", rel)
        if key not in self._cache:
            if not self.is_file(rel):
                self._cache[key] = (None, "absent" if rel not in self.entries else "not a regular file")
            else:
                try:
                    self._cache[key] = (load_json_bytes(self.read_bytes(rel, MAX_JSON_BYTES)), None)
                except OSError as e:
                    self._cache[key] = (None, f"not readable ({printable(str(e), 160)})")
                except ValueError as e:
                    self._cache[key] = (None, f"not readable JSON ({e})")
        return self._cache[key]

    # the manifest and roles ------------------------------------------------------------------
    def _load_manifest(self) -> tuple[dict | None, str | None]:
        if MANIFEST not in self.entries:
            return None, "MANIFEST.json is missing"
        if self.entries[MANIFEST].kind != "file":
            return None, "MANIFEST.json is not a regular file"
        try:
            doc = load_json_bytes(self.read_bytes(MANIFEST, MAX_JSON_BYTES))
        except OSError as e:
            return None, f"MANIFEST.json cannot be read ({printable(str(e), 160)})"
        except ValueError as e:
            return None, f"MANIFEST.json is not readable JSON ({e})"
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
            return None, 'MANIFEST.json has no "files" object'
        return doc, None

    def roles(self) -> dict[str, str]:
        """rel -> role of every present file, from the layout (never from the manifest)."""
        if "roles" not in self._cache:
            self._cache["roles"] = {rel: layout_role(rel) for rel in self.files() if rel != MANIFEST}
        return self._cache["roles"]

    def with_role(self, role: str) -> list[str]:
        return sorted(rel for rel, r in self.roles().items() if r == role)

    def one(self, role: str) -> str | None:
        """The single present file of a role: the layout's own path for it when present, else the first
        (rules count the others)."""
        present = [rel for rel in self.with_role(role) if self.is_file(rel)]
        canonical = [rel for rel in present if LAYOUT.get(rel) == role]
        return (canonical or present or [None])[0]

    def section(self, name: str) -> dict:
        value = (self.manifest or {}).get(name)
        return value if isinstance(value, dict) else {}

    # records ---------------------------------------------------------------------------------
    def model_args(self) -> tuple[dict | None, str | None]:
        doc, err = self.read_json(self.one("task2_args"))
        if err:
            return None, err
        if not isinstance(doc, dict) or not isinstance(doc.get("model_class"), str) \
                or not isinstance(doc.get("config"), dict):
            return None, 'not {"model_class": str, "config": {...}}'
        return doc, None

    def run_record(self) -> dict | None:
        doc, _ = self.read_json(self.one("task2_record"))
        return doc if isinstance(doc, dict) else None

    def train_config(self) -> dict | None:
        for rel in self.with_role("config"):
            if rel.endswith("task2/config.json"):
                doc, _ = self.read_json(rel)
                return doc if isinstance(doc, dict) else None
        return None

    def task1_record(self) -> dict | None:
        doc, _ = self.read_json(self.one("task1_record"))
        return doc if isinstance(doc, dict) else None

    def predict_record(self) -> dict | None:
        doc, _ = self.read_json(self.one("prediction_record"))
        return doc if isinstance(doc, dict) else None

    # code ------------------------------------------------------------------------------------
    def modules(self) -> dict[str, ModuleSource]:
        """Every .py file of the package, parsed (never imported) from its bytes exactly as Python would
        decode them (a coding declaration is honoured and recorded); keyed by dotted module name."""
        if "modules" not in self._cache:
            out: dict[str, ModuleSource] = {}
            for rel in self.files():
                if not rel.endswith(".py"):
                    continue
                name, is_pkg = module_name(rel)
                try:
                    data = self.read_bytes(rel, MAX_PY_BYTES)
                except OSError as e:
                    out[name] = ModuleSource(name, rel, is_pkg, error=f"not read ({printable(str(e), 160)})")
                    continue
                out[name] = scan_source(name, rel, is_pkg, data)
            self._cache["modules"] = out
        return self._cache["modules"]

    # the Task 2 checkpoint -------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Header-level view of the Task 2 checkpoint: {rel, format, tensors{name: (dtype, shape)},
        problems[], error}. safetensors files are read with the safetensors library's own loader; a
        .pt/.pth is first checked with torch's get_unsafe_globals_in_checkpoint and only then loaded
        with torch.load(weights_only=True)."""
        if "checkpoint" in self._cache:
            return self._cache["checkpoint"]
        rel = self.one("task2_checkpoint")
        out = {"rel": rel, "format": None, "tensors": {}, "problems": [], "error": None}
        self._cache["checkpoint"] = out
        if rel is None:
            out["error"] = "no Task 2 checkpoint in the package"
            return out
        out.update(inspect_weights(self, rel))
        return out

    # the data root ---------------------------------------------------------------------------
    def data_file(self, name: str) -> Path | None:
        """DATA/MicroLens_1M_x1/<name>.parquet (or DATA/<name>.parquet) when --data was given and it exists."""
        if self.data is None:
            return None
        for cand in (self.data / DATASET_DIR / f"{name}.parquet", self.data / f"{name}.parquet"):
            if cand.is_file():
                return cand
        return None




def inspect_weights(ctx: PackageContext, rel: str) -> dict:
    """Format, tensors and problems of one weight file; never unpickles anything unsafe."""
    out: dict = {"format": None, "tensors": {}, "problems": [], "error": None}
    try:
        size = ctx.size(rel)
        head = ctx.head(rel, 16)
    except OSError as e:
        out["error"] = f"cannot be read ({printable(str(e), 200)})"
        return out
    if formats.looks_like_safetensors(head, size):
        out["format"] = "safetensors"
        try:
            tensors, metadata, problems = formats.read_safetensors(ctx.path(rel), size,
                                                                   int.from_bytes(head[:8], "little"))
        except formats.FormatError as e:
            out["error"] = f"not a valid safetensors file: {e}"
            return out
        out.update(tensors=tensors, problems=problems, metadata=metadata)
        return out
    if head.startswith(b"PK\x03\x04") and rel.endswith((".pt", ".pth")):
        out["format"] = "torch-zip"
        try:
            unsafe = formats.torch_unsafe_globals(ctx.path(rel))
        except formats.FormatError as e:
            out["error"] = str(e)
            return out
        if unsafe:
            out["error"] = ("its pickle refers to globals outside torch's weights-only set: "
                            + ", ".join(unsafe)[:300] + "; never loaded")
            return out
        try:
            import torch

            state = torch.load(ctx.path(rel), map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for what it refuses
            out["error"] = f"torch.load(weights_only=True) refuses it ({type(e).__name__})"
            return out
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            out["error"] = "not a flat name -> tensor map (nested objects or non-tensor values)"
            return out
        out["tensors"] = {k: (TORCH_TO_SAFETENSORS.get(str(v.dtype).replace("torch.", ""), str(v.dtype)), list(v.shape))
                          for k, v in state.items()}
        return out
    try:
        is_pickle = head[:1] == b"\x80" or (size <= formats.MAX_PICKLE_SCAN and formats.sniff_pickle(
            ctx.read_bytes(rel, formats.MAX_PICKLE_SCAN)))
    except OSError:
        is_pickle = False
    out["format"] = "pickle" if is_pickle else "unknown"
    out["error"] = ("a raw pickle: loading it could run any code; save the state dict with safetensors"
                    if is_pickle else "neither safetensors nor a torch weights-only zip")
    return out
