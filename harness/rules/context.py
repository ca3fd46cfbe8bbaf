"""What the rules look at: a submission folder read without following links, running code or unpickling.

`PackageContext(root, track, data)` walks the folder once with `lstat` (symlinks are recorded, never
followed), loads MANIFEST.json, and offers cached, safe views that the rules share: files by role, JSON
documents, the Python modules (parsed, never imported), the Task 2 checkpoint's header, the data root's
files. A file is only ever opened when it is a regular file inside the folder (`O_NOFOLLOW`).

The package layout (what `harness package` writes; `LAYOUT` maps paths to roles):

    prediction.csv, prediction.zip            the upload (prediction.csv alone at the zip's root)
    outputs/task1/item_info.parquet           Task 1 embeddings (official item_info schema)
    outputs/task1/reducer.safetensors         Task 1 reducer
    outputs/task1/task1.json                  Task 1 record: models and licences, config, seed, counts
    outputs/task2/model.safetensors           Task 2 checkpoint (flat name -> tensor)
    outputs/task2/model_args.json             {"model_class", "config"}: rebuilds the model
    outputs/task2/config.json, run.json, metrics.jsonl, training_curves.png
    outputs/prediction/predict.json           prediction record
    configs/task1.json, configs/task2.json    the configs the reproduce commands pass
    task1/ task2/ harness/ scripts/ pyproject.toml requirements.lock reproduce.sh run_tests.sh
    REPRODUCE.md, LICENSE, MANIFEST.json
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.rules import formats
from harness.rules.pysource import ModuleSource, module_name, scan_source

FORMAT = "mmctr-submission/1"
MANIFEST = "MANIFEST.json"
TRACK_COLUMNS = {1: "Task1", 2: "Task2", 3: "Task1&2"}
X1 = "MicroLens_1M_x1"

ROLES = {
    "prediction": "prediction.csv, the scored file",
    "upload": "prediction.zip, what is uploaded",
    "task1_embeddings": "Task 1 item_info.parquet",
    "task1_reducer": "Task 1 reducer weights",
    "task1_record": "task1.json",
    "task2_checkpoint": "Task 2 model weights",
    "task2_args": "model_args.json",
    "task2_record": "run.json",
    "prediction_record": "predict.json",
    "config": "a config the reproduce commands use",
    "metrics": "per-epoch metrics",
    "figure": "a figure",
    "code": "source code and scripts",
    "doc": "documentation",
    "license": "the LICENSE",
    "other": "anything else a run wrote (logs)",
}

LAYOUT = {
    "prediction.csv": "prediction",
    "prediction.zip": "upload",
    "outputs/task1/item_info.parquet": "task1_embeddings",
    "outputs/task1/reducer.safetensors": "task1_reducer",
    "outputs/task1/reducer.npz": "task1_reducer",
    "outputs/task1/task1.json": "task1_record",
    "outputs/task2/model.safetensors": "task2_checkpoint",
    "outputs/task2/model_args.json": "task2_args",
    "outputs/task2/config.json": "config",
    "outputs/task2/run.json": "task2_record",
    "outputs/task2/metrics.jsonl": "metrics",
    "outputs/task2/training_curves.png": "figure",
    "outputs/prediction/predict.json": "prediction_record",
    "configs/task1.json": "config",
    "configs/task2.json": "config",
    "REPRODUCE.md": "doc",
    "LICENSE": "license",
}
CODE_DIRS = ("task1", "task2", "harness", "scripts")
CODE_FILES = ("pyproject.toml", "requirements.lock", "reproduce.sh", "run_tests.sh")

MAX_ENTRIES = 20_000  # files and folders walked; more is itself a finding
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_PY_BYTES = 2 * 1024 * 1024


def infer_role(rel: str) -> str:
    """The role a path has in the standard layout (used when MANIFEST.json cannot be read)."""
    if rel in LAYOUT:
        return LAYOUT[rel]
    if rel in CODE_FILES or rel.split("/")[0] in CODE_DIRS:
        return "code"
    if rel.endswith(".md"):
        return "doc"
    return "other"


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
        rerun: results of `--rerun predict|full` (see harness.rules.rerun), or None.
    """

    def __init__(self, root, track: int | None = None, data=None, rerun: dict | None = None):
        self.root = Path(root)
        self.requested_track = track
        self.data = None if data is None else Path(data)
        self.rerun = rerun
        self.entries: dict[str, Entry] = {}
        self.walk_truncated = False
        self._walk()
        self.manifest, self.manifest_error = self._load_manifest()
        manifest_track = self.manifest.get("track") if self.manifest else None
        self.manifest_track = manifest_track if manifest_track in TRACK_COLUMNS else None
        self.track = track if track is not None else self.manifest_track
        self._cache: dict = {}

    # the folder ------------------------------------------------------------------------------
    def _walk(self) -> None:
        count = 0
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(dirnames) + sorted(filenames):
                count += 1
                if count > MAX_ENTRIES:
                    self.walk_truncated = True
                    dirnames[:] = []
                    return
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    try:
                        target = os.readlink(full)
                    except OSError:
                        target = "?"
                    self.entries[rel] = Entry(rel, "symlink", 0, target)
                elif stat.S_ISDIR(st.st_mode):
                    self.entries[rel] = Entry(rel, "dir", 0)
                elif stat.S_ISREG(st.st_mode):
                    self.entries[rel] = Entry(rel, "file", st.st_size, nlink=st.st_nlink)
                else:
                    self.entries[rel] = Entry(rel, "other", 0)
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]

    def files(self) -> list[str]:
        """Regular files, relative paths, sorted (MANIFEST.json included)."""
        return sorted(r for r, e in self.entries.items() if e.kind == "file")

    def is_file(self, rel: str | None) -> bool:
        return rel is not None and unsafe_rel(rel) is None and rel in self.entries \
            and self.entries[rel].kind == "file"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def open(self, rel: str):
        """Open a regular file of the package for reading, refusing links (O_NOFOLLOW)."""
        if not self.is_file(rel):
            raise OSError(f"{rel} is not a regular file of the package")
        fd = os.open(self.root / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")

    def read_bytes(self, rel: str, limit: int | None = None) -> bytes:
        with self.open(rel) as f:
            data = f.read(-1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise OSError(f"{rel} is larger than {limit:,} bytes")
        return data

    def head(self, rel: str, n: int = 64) -> bytes:
        with self.open(rel) as f:
            return f.read(n)

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
                    doc = json.loads(self.read_bytes(rel, MAX_JSON_BYTES).decode("utf-8"))
                    self._cache[key] = (doc, None)
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                    self._cache[key] = (None, f"not readable JSON ({type(e).__name__}: {str(e)[:120]})")
        return self._cache[key]

    # the manifest and roles ------------------------------------------------------------------
    def _load_manifest(self) -> tuple[dict | None, str | None]:
        if MANIFEST not in self.entries:
            return None, "MANIFEST.json is missing"
        if self.entries[MANIFEST].kind != "file":
            return None, "MANIFEST.json is not a regular file"
        try:
            doc = json.loads(self.read_bytes(MANIFEST, MAX_JSON_BYTES).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            return None, f"MANIFEST.json is not readable JSON ({type(e).__name__})"
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
            return None, 'MANIFEST.json has no "files" object'
        return doc, None

    def manifest_files(self) -> dict[str, dict]:
        """The manifest's file entries whose paths are safe (unsafe ones are PKG-HYGIENE's business)."""
        if not self.manifest:
            return {}
        return {rel: info for rel, info in self.manifest["files"].items()
                if unsafe_rel(rel) is None and isinstance(info, dict)}

    def roles(self) -> dict[str, str]:
        """rel -> role, from the manifest when it is readable, else from the standard layout."""
        if "roles" not in self._cache:
            if self.manifest:
                out = {rel: str(info.get("role", "other")) for rel, info in self.manifest_files().items()}
            else:
                out = {rel: infer_role(rel) for rel in self.files() if rel != MANIFEST}
            self._cache["roles"] = out
        return self._cache["roles"]

    def with_role(self, role: str) -> list[str]:
        return sorted(rel for rel, r in self.roles().items() if r == role)

    def one(self, role: str) -> str | None:
        """The single present file of a role (the first when there are several; rules count them)."""
        present = [rel for rel in self.with_role(role) if self.is_file(rel)]
        return present[0] if present else None

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
        """Every .py file of the package, parsed (never imported); keyed by dotted module name."""
        if "modules" not in self._cache:
            out: dict[str, ModuleSource] = {}
            for rel in self.files():
                if not rel.endswith(".py"):
                    continue
                name, is_pkg = module_name(rel)
                size = self.entries[rel].size
                if size > MAX_PY_BYTES:
                    out[name] = ModuleSource(name, rel, is_pkg, error=f"{size:,} bytes: too large to review")
                    continue
                try:
                    text = self.read_bytes(rel, MAX_PY_BYTES).decode("utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    out[name] = ModuleSource(name, rel, is_pkg, error=f"not readable UTF-8 ({type(e).__name__})")
                    continue
                out[name] = scan_source(name, rel, is_pkg, text)
            self._cache["modules"] = out
        return self._cache["modules"]

    # the Task 2 checkpoint -------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Header-level view of the Task 2 checkpoint: {rel, format, tensors{name: (dtype, shape)},
        problems[], error}. Reads safetensors headers by hand; a .pt/.pth is opcode-scanned and only
        then loaded with torch.load(weights_only=True)."""
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
        for cand in (self.data / X1 / f"{name}.parquet", self.data / f"{name}.parquet"):
            if cand.is_file():
                return cand
        return None


def inspect_weights(ctx: PackageContext, rel: str) -> dict:
    """Format, tensors and problems of one weight file; never unpickles anything unsafe."""
    out: dict = {"format": None, "tensors": {}, "problems": [], "error": None}
    size = ctx.entries[rel].size
    try:
        head = ctx.head(rel, 16)
    except OSError as e:
        out["error"] = f"cannot be read ({e})"
        return out
    if formats.looks_like_safetensors(head, size):
        out["format"] = "safetensors"
        try:
            with ctx.open(rel) as f:
                header = formats.read_safetensors_header(f)
        except (formats.FormatError, OSError) as e:
            out["error"] = f"not a valid safetensors file: {e}"
            return out
        out["tensors"] = {t.name: (t.dtype, list(t.shape)) for t in header.tensors.values()}
        out["problems"] = list(header.problems)
        out["metadata"] = header.metadata
        return out
    if head.startswith(b"PK\x03\x04") and rel.endswith((".pt", ".pth")):
        out["format"] = "torch-zip"
        data, why = formats.torch_zip_pickle(ctx.path(rel))
        if data is None:
            out["error"] = why
            return out
        found, problems = formats.pickle_globals(data)
        unsafe = sorted(g for g in found if g not in formats.TORCH_WEIGHTS_GLOBALS)
        if problems or unsafe:
            out["error"] = ("its pickle refers to globals outside torch's weights-only set: "
                            + ", ".join(unsafe + problems)[:300] + "; never loaded")
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
        dt = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}
        out["tensors"] = {k: (dt.get(v.dtype, str(v.dtype)), list(v.shape)) for k, v in state.items()}
        return out
    try:
        is_pickle = formats.sniff_pickle(ctx.read_bytes(rel, formats.MAX_PICKLE_SCAN)) if size <= formats.MAX_PICKLE_SCAN \
            else head[:1] == b"\x80"
    except OSError:
        is_pickle = False
    out["format"] = "pickle" if is_pickle else "unknown"
    out["error"] = ("a raw pickle: loading it could run any code; save the state dict with safetensors"
                    if is_pickle else "neither safetensors nor a torch weights-only zip")
    return out
