"""Rules about the package as a set of files: manifest, hygiene, licence, the prediction, the run records."""

from __future__ import annotations

import io
import math
import os
import re
import zipfile

from core.challenge import TRACK_COLUMNS
from core.errors import error, warning
from referee.inspection import context, formats
from referee.rules.registry import rule
from referee.inspection.context import (FORMAT, MANIFEST, MAX_FILE_BYTES, MAX_TOTAL_BYTES, ROLES, layout_role, printable,
                                   unsafe_rel)
from referee.inspection.licenses import detect_license

MAX_PREDICTION_BYTES = 256 * 1024 * 1024  # prediction.csv, in the package or in prediction.zip (real: 10-16 MB)
MAX_UNZIPPED = MAX_PREDICTION_BYTES
MAX_NPZ_MEMBERS = 1_000
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth", ".ckpt", ".bin")
COMPILED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe")
KNOWN_MAGIC = (b"PAR1", b"\x89PNG", b"\x93NUMPY", b"\xff\xd8\xff", b"GIF8")

REQUIRED_ROLES = {
    "prediction": "prediction.csv", "upload": "prediction.zip", "task2_checkpoint": "the Task 2 checkpoint",
    "task2_args": "model_args.json", "task2_record": "run.json", "prediction_record": "predict.json",
    "doc": "REPRODUCE.md", "license": "LICENSE",
}
REQUIRED_TASK1_ROLES = {"task1_embeddings": "Task 1 item_info.parquet", "task1_record": "task1.json"}
REQUIRED_CODE = ("task2/", "harness/", "pyproject.toml", "reproduce.sh", "REPRODUCE.md")


# ---------------------------------------------------------------------------------------------
# PKG-MANIFEST


@rule("PKG-MANIFEST", "MANIFEST.json lists every file with its sha256, size and role: nothing missing, "
      "nothing extra, nothing changed; the track's required files are present")
def check_manifest(ctx):
    rid = "PKG-MANIFEST"
    if ctx.manifest is None:
        return [error(rid, f"{ctx.manifest_error}; re-run `harness package`", MANIFEST)]
    out = []
    if ctx.manifest.get("format") != FORMAT:
        out.append(error(rid, f"format is {ctx.manifest.get('format')!r}, expected {FORMAT!r}", MANIFEST))
    if ctx.manifest_track is None:
        out.append(error(rid, 'no "track" (1, 2 or 3) in the manifest', MANIFEST))
    listed = ctx.manifest["files"]
    if len(listed) > context.MAX_ENTRIES:
        return out + [error(rid, f"lists {len(listed):,} files, more than the verifier reads "
                                 f"({context.MAX_ENTRIES:,})",
                            MANIFEST)]
    for rel, info in listed.items():
        if unsafe_rel(rel) is not None:
            continue  # PKG-HYGIENE reports it; never touch such a path
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) \
                or not isinstance(info.get("size"), int) or isinstance(info.get("size"), bool):
            out.append(error(rid, "manifest entry lacks sha256 or size", rel))
            continue
        if info.get("role") not in ROLES:
            out.append(error(rid, f"unknown role {printable(info.get('role'), 60)!r}; roles: {', '.join(ROLES)}", rel))
        elif info.get("role") != layout_role(rel):
            out.append(error(rid, f"role {info.get('role')} in the manifest, but the layout makes this path "
                             f"{layout_role(rel)}: the verifier goes by the layout", rel))
        entry = ctx.entries.get(rel)
        if entry is None:
            out.append(error(rid, "listed in the manifest but missing from the package", rel))
        elif entry.kind != "file":
            out.append(error(rid, f"listed as a file but is a {entry.kind}", rel))
        elif entry.size != info["size"]:
            out.append(error(rid, f"size {entry.size:,} bytes, the manifest says {info['size']:,}: changed "
                             "after packaging", rel))
        else:
            try:
                digest = ctx.sha256(rel)
            except OSError as e:
                out.append(error(rid, f"cannot be hashed ({printable(str(e), 160)})", rel))
                continue
            if digest != info["sha256"]:
                out.append(error(rid, "sha256 differs from the manifest's: changed after packaging", rel))
    for rel in ctx.files():
        if rel != MANIFEST and rel not in listed:
            out.append(error(rid, "extra file, not in the manifest", rel))
    roles = ctx.roles()
    present = {r for rel, r in roles.items() if rel in ctx.entries}
    required = dict(REQUIRED_ROLES)
    if ctx.track in (1, 3):
        required.update(REQUIRED_TASK1_ROLES)
    for role, what in required.items():
        if role not in present:
            out.append(error(rid, f"no file with role {role} ({what}); track {ctx.track} needs it", MANIFEST))
    code = list(REQUIRED_CODE) + (["task1/"] if ctx.track in (1, 3) else [])
    for item in code:
        if item.endswith("/"):
            if not any(rel.startswith(item) and rel.endswith(".py") for rel in ctx.files()):
                out.append(error(rid, f"no Python code under {item}: the package must hold the code that "
                                 "produced the results", item))
        elif item not in roles or not ctx.is_file(item):
            out.append(error(rid, "missing: the package must hold it to be reproduced", item))
    return out


# ---------------------------------------------------------------------------------------------
# PKG-HYGIENE


def _npz_objects(ctx, rel: str) -> list[str]:
    """Members of an .npz (a zip of .npy) whose arrays hold Python objects; reads each member's header only,
    drawing on the package's decompression budget."""
    found = []
    with ctx.open(rel) as f, zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            return [f"{len(infos):,} members"]
        for info in infos:
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                found.append(f"{info.filename} (not an .npy array)")
                continue
            ctx.inflate(4096, rel)
            with zf.open(info) as member:
                head = member.read(4096)
            try:
                if formats.npy_header(io.BytesIO(head))[2]:
                    found.append(info.filename + " (object array: loads by unpickling)")
            except formats.FormatError:
                found.append(f"{info.filename} (not a readable .npy header)")
    return found


def pickle_reason(ctx, rel: str) -> str | None:
    """Why this file is a pickle (or holds one), or None. Reads bytes; never unpickles.

    Zips are looked into only where the layout allows one (the Task 1 reducer's .npz): elsewhere a zip
    is an error of T2-SINGLE-MODEL without being decompressed.
    """
    size = ctx.entries[rel].size
    low = rel.lower()
    if low.endswith((".pkl", ".pickle", ".joblib", ".dill")):
        return "pickle/joblib file (by its name)"
    head = ctx.head(rel, 16)
    if head.startswith(b"PK\x03\x04"):
        if layout_role(rel) != "task1_reducer":
            return None
        try:
            members = _npz_objects(ctx, rel)
        except (zipfile.BadZipFile, ValueError, NotImplementedError, RuntimeError, EOFError):
            return None  # T2-SINGLE-MODEL judges an unreadable container
        return f"npz holding what np.load could only unpickle: {', '.join(members[:3])}" if members else None
    if head.startswith(b"\x93NUMPY"):
        try:
            with ctx.open(rel) as f:
                _dtype, _shape, has_obj = formats.npy_header(f)
        except (formats.FormatError, OSError):
            return None
        return "numpy object array: np.load would unpickle it" if has_obj else None
    if head.startswith(KNOWN_MAGIC) or formats.looks_like_safetensors(head, size):
        return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle (protocol magic bytes)"
    if size <= formats.MAX_PICKLE_SCAN and formats.sniff_pickle(ctx.read_bytes(rel, formats.MAX_PICKLE_SCAN)):
        return "pickle (its bytes decode as pickle opcodes ending in STOP)"
    if low.endswith(PICKLE_SUFFIXES):
        return f"{os.path.splitext(low)[1]} file that is neither safetensors nor a scanned torch checkpoint"
    return None


@rule("PKG-HYGIENE", "no symlinks or special files, no absolute or '..' paths, no pickle/joblib or compiled "
      "files, size limits")
def check_hygiene(ctx):
    rid = "PKG-HYGIENE"
    out = []
    if ctx.walk_truncated:
        out.append(error(rid, f"more than {context.MAX_ENTRIES:,} files and folders, more than the verifier reads; a "
                         "package holds code, outputs and docs only", "."))
    for rel in ctx.too_deep[:5]:
        out.append(error(rid, "folders nested deeper than the verifier walks; not looked into", rel))
    for rel in ctx.unreadable_dirs[:5]:
        out.append(error(rid, "a folder the verifier cannot list", rel))
    root_real = os.path.realpath(ctx.root)
    for rel, e in sorted(ctx.entries.items()):
        if e.kind == "symlink":
            dest = os.path.realpath(os.path.join(ctx.root, os.path.dirname(rel), e.target or ""))
            inside = dest == root_real or dest.startswith(root_real + os.sep)
            where = "inside the package" if inside else "OUTSIDE the package"
            out.append(error(rid, f"symlink to {e.target!r} ({where}); packages hold regular files only", rel))
        elif e.kind == "other":
            out.append(error(rid, "not a regular file or folder (device, pipe or socket)", rel))
        if not re.fullmatch(r"[\w.+@=,~ -]+(/[\w.+@=,~ -]+)*", rel, flags=re.ASCII):
            out.append(error(rid, "file name with control, non-ASCII or unusual characters", rel))
    for rel in list((ctx.manifest or {}).get("files", {}))[:context.MAX_ENTRIES]:
        why = unsafe_rel(rel)
        if why:
            out.append(error(rid, f"manifest path {why}: packages list relative paths inside themselves",
                             str(rel)[:200]))
    checkpoint = ctx.one("task2_checkpoint")
    total = 0
    for rel in ctx.files():
        e = ctx.entries[rel]
        total += e.size
        if e.nlink > 1:
            out.append(error(rid, f"hard link ({e.nlink} names for one file): a name outside the package can "
                             "change it after it is verified, or it is a file of someone else's (the truth, another "
                             "team's); copy the file instead (cp without -l)", rel))
        if e.size > MAX_FILE_BYTES:
            out.append(error(rid, f"{e.size:,} bytes: over the {MAX_FILE_BYTES:,}-byte limit per file; not read",
                             rel))
            continue
        if rel.lower().endswith(COMPILED_SUFFIXES):
            out.append(error(rid, "compiled code cannot be reviewed; ship the source", rel))
        if total > MAX_TOTAL_BYTES:
            continue  # reported below; no file of such a package is read
        if rel == checkpoint and rel.endswith((".pt", ".pth")):
            continue  # T2-CHECKPOINT-FORMAT scans its pickle for unsafe globals
        try:
            why = pickle_reason(ctx, rel)
        except OSError as exc:
            why = None
            out.append(error(rid, f"cannot be read ({printable(str(exc), 160)})", rel))
        if why:
            out.append(error(rid, f"{why}; loading it could run arbitrary code: save arrays with safetensors "
                             "or parquet", rel))
    if ctx.total_bytes > MAX_TOTAL_BYTES:
        out.append(error(rid, f"{ctx.total_bytes:,} bytes in all: over the {MAX_TOTAL_BYTES:,}-byte package limit; "
                         "no file's content was read", "."))
    return out


# ---------------------------------------------------------------------------------------------
# PKG-LICENSE


@rule("PKG-LICENSE", "LICENSE is the MIT or the Apache-2.0 text (winners release under one of them)")
def check_license(ctx):
    rid = "PKG-LICENSE"
    rel = ctx.one("license")
    if rel is None:
        return [error(rid, "no LICENSE; add the MIT or Apache-2.0 text (harness package --license)", "LICENSE")]
    try:
        text = ctx.read_bytes(rel, 1024 * 1024).decode("utf-8", errors="replace")
    except OSError as e:
        return [error(rid, f"cannot be read ({e})", rel)]
    found = detect_license(text)
    if found is None:
        return [error(rid, "neither the MIT nor the Apache-2.0 licence text", rel)]
    out = []
    if ctx.is_file("pyproject.toml"):
        import tomllib

        try:
            declared = tomllib.loads(ctx.read_bytes("pyproject.toml", 1024 * 1024).decode("utf-8"))
            lic = declared.get("project", {}).get("license")
            lic = lic.get("text") if isinstance(lic, dict) else lic
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            lic = None
        if isinstance(lic, str) and lic.strip() and lic.strip() != found:
            out.append(warning(rid, f"LICENSE is {found} but pyproject.toml declares {lic!r}", rel))
    return out


# ---------------------------------------------------------------------------------------------
# the prediction


def _read_prediction(ctx):
    from core.validate import read_table

    rel = ctx.one("prediction")
    if rel is None:
        return None, None, None
    def read():
        try:
            return read_table(ctx.checked_path(rel, MAX_PREDICTION_BYTES), "prediction")
        except OSError as e:
            return None, error("io.unreadable", printable(str(e), 200), rel)

    frame, problem = ctx.memo(("prediction_frame",), read)
    return rel, frame, problem


def _test_ids(ctx):
    import polars as pl

    path = ctx.data_file("test")
    if path is None:
        return None, None
    def read():
        try:
            return pl.read_parquet(path, columns=["ID"])["ID"], None
        except Exception as e:  # polars raises several types for a broken file
            return None, f"cannot read the test IDs ({type(e).__name__})"

    return ctx.memo(("test_ids",), read)


@rule("PRED-SCHEMA", "prediction.csv follows the submission schema (ID then finite scores in [0, 1]) and, "
      "with --data, holds exactly the test IDs in test order")
def check_prediction(ctx):
    from core.schemas import validate_prediction

    rid = "PRED-SCHEMA"
    rel, frame, problem = _read_prediction(ctx)
    if rel is None:
        return []  # PKG-MANIFEST reports the missing file
    if problem is not None:
        return [error(rid, problem.message, rel)]
    out = []
    ids, why = _test_ids(ctx)
    if why:
        out.append(error(rid, why, str(ctx.data_file("test"))))
    for f in validate_prediction(frame, test_ids=ids, path=rel):
        out.append(error(rid, f"[{f.id}] {f.message}", rel) if f.severity == "error"
                   else warning(rid, f"[{f.id}] {f.message}", rel))
    if ctx.data is None:
        out.append(warning(rid, "not compared with the test IDs: pass --data DATA_DIR", rel))
    elif ctx.data_file("test") is None:
        out.append(error(rid, "test.parquet not found under --data; pass the MicroLens_1M_MMCTR root",
                         str(ctx.data)))
    record = ctx.predict_record()
    if record is not None and isinstance(record.get("rows"), int) and record["rows"] != frame.height:
        out.append(error(rid, f"{frame.height:,} rows, but predict.json recorded {record['rows']:,}", rel))
    return out


@rule("PRED-TRACK-COLUMN", "the prediction's score column is the track's (Task1, Task2, Task1&2) and the "
      "manifest, predict.json and --track agree on the track")
def check_track_column(ctx):
    rid = "PRED-TRACK-COLUMN"
    out = []
    if ctx.track is None:
        return [error(rid, "the track is unknown: the manifest names none; pass --track 1|2|3", MANIFEST)]
    if ctx.manifest_track is not None and ctx.requested_track is not None \
            and ctx.manifest_track != ctx.requested_track:
        out.append(error(rid, f"--track {ctx.requested_track}, but the package was built for track "
                         f"{ctx.manifest_track}", MANIFEST))
    want = TRACK_COLUMNS[ctx.track]
    rel, frame, problem = _read_prediction(ctx)
    if rel is not None and frame is not None:
        scores = [c for c in frame.columns if c != "ID"]
        if want not in frame.columns:
            out.append(error(rid, f"track {ctx.track} is scored from column {want!r}, but the columns are "
                             f"{', '.join(frame.columns)}", rel))
        others = [c for c in scores if c != want]
        if others and want in frame.columns:
            out.append(warning(rid, f"extra score column(s) {', '.join(others)}: they score other tracks", rel))
    record = ctx.predict_record()
    if record is not None:
        if record.get("track") not in (None, ctx.track):
            out.append(error(rid, f"predict.json says track {record.get('track')}, the package is checked as "
                             f"track {ctx.track}", ctx.one("prediction_record")))
        if record.get("column") not in (None, want):
            out.append(error(rid, f"predict.json wrote column {record.get('column')!r}, track {ctx.track} "
                             f"needs {want!r}", ctx.one("prediction_record")))
    return out


@rule("PRED-UPLOAD", "prediction.zip holds prediction.csv alone at its root, byte-identical to prediction.csv "
      "and to the hash predict.json recorded")
def check_upload(ctx):
    rid = "PRED-UPLOAD"
    csv_rel, zip_rel = ctx.one("prediction"), ctx.one("upload")
    if csv_rel is None or zip_rel is None:
        return []
    out = []
    try:
        with ctx.open(zip_rel) as f, zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if names != ["prediction.csv"]:
                out.append(error(rid, f"must hold prediction.csv alone at its root; holds {names[:5]}", zip_rel))
            match = [i for i in infos if i.filename == "prediction.csv"]
            if match:
                if match[0].file_size > MAX_UNZIPPED:
                    out.append(error(rid, f"prediction.csv unzips to {match[0].file_size:,} bytes", zip_rel))
                elif match[0].file_size != ctx.size(csv_rel):
                    out.append(error(rid, "prediction.csv inside the zip differs from prediction.csv", zip_rel))
                else:
                    ctx.inflate(match[0].file_size, zip_rel)
                    with zf.open(match[0]) as m:
                        data = m.read(match[0].file_size + 1)  # the header can lie: read one byte more
                    if data != ctx.read_bytes(csv_rel, MAX_PREDICTION_BYTES):
                        out.append(error(rid, "prediction.csv inside the zip differs from prediction.csv", zip_rel))
    except OSError as e:
        out.append(error(rid, f"not read ({printable(str(e), 200)})", zip_rel))
    except (zipfile.BadZipFile, ValueError, NotImplementedError, RuntimeError, EOFError) as e:
        out.append(error(rid, f"not a readable zip ({type(e).__name__})", zip_rel))
    record = ctx.predict_record()
    recorded = (record or {}).get("outputs", {}) if isinstance((record or {}).get("outputs"), dict) else {}
    if recorded.get("prediction.csv") and ctx.size(csv_rel) <= MAX_FILE_BYTES \
            and recorded["prediction.csv"] != ctx.sha256(csv_rel):
        out.append(error(rid, "sha256 differs from the one predict.json recorded: edited after prediction",
                         csv_rel))
    return out


# ---------------------------------------------------------------------------------------------
# run records


SEEDING_FLAGS = {"deterministic_algorithms": True, "cudnn_benchmark": False, "cudnn_deterministic": True,
                 "tf32_matmul": False, "tf32_cudnn": False}


def _seeding_findings(rid, record: dict, rel: str, what: str) -> list:
    out = []
    if not isinstance(record.get("seed"), int):
        out.append(error(rid, f"{what} records no integer seed", rel))
    seeding = record.get("seeding")
    if not isinstance(seeding, dict):
        return out + [error(rid, f"{what} records no seeding flags (core.seeding.seed_everything)", rel)]
    off = [f"{k}={seeding.get(k)!r}" for k, want in SEEDING_FLAGS.items() if seeding.get(k) is not want]
    if off:
        out.append(warning(rid, f"{what} ran without the deterministic flags: {', '.join(off)}", rel))
    if seeding.get("pythonhashseed") in (None, ""):
        out.append(warning(rid, f"{what} ran without PYTHONHASHSEED set before Python started "
                           "(reproduce.sh exports it)", rel))
    return out


@rule("REPRO-SEEDING", "every run records its seed and deterministic flags (PYTHONHASHSEED set before "
      "start); reproduce.sh exports PYTHONHASHSEED")
def check_seeding(ctx):
    rid = "REPRO-SEEDING"
    out = []
    rel = ctx.one("task2_record")
    if rel is not None:
        record = ctx.run_record()
        if record is None:
            out.append(error(rid, "run.json is not a readable JSON object", rel))
        else:
            out += _seeding_findings(rid, record, rel, "the Task 2 run")
    if ctx.track in (1, 3):
        rel1 = ctx.one("task1_record")
        record1 = ctx.task1_record()
        if rel1 is not None and record1 is None:
            out.append(error(rid, "task1.json is not a readable JSON object", rel1))
        elif record1 is not None:
            out += _seeding_findings(rid, record1, rel1, "the Task 1 run")
    if ctx.is_file("reproduce.sh") and ctx.size("reproduce.sh") <= 1024 * 1024:
        text = ctx.read_bytes("reproduce.sh", 1024 * 1024).decode("utf-8", errors="replace")
        if not re.search(r"PYTHONHASHSEED=\S", text):
            out.append(warning(rid, "does not set PYTHONHASHSEED before Python starts", "reproduce.sh"))
    return out


@rule("REPRO-RECORD", "the manifest records the environment fingerprint, git state, seeds, input data hashes "
      "and metrics, consistent with the run records (and with --data's files)")
def check_record(ctx):
    rid = "REPRO-RECORD"
    if ctx.manifest is None:
        return []
    out = []
    env = ctx.section("environment")
    if not env.get("python") or not isinstance(env.get("torch"), dict):
        out.append(error(rid, "no environment fingerprint (python, torch, packages)", MANIFEST))
    git = ctx.section("git")
    if "commit" not in git or "dirty" not in git:
        out.append(error(rid, "no git state (commit, dirty)", MANIFEST))
    elif git.get("dirty"):
        out.append(warning(rid, f"packaged from a dirty tree (commit {str(git.get('commit'))[:12]}): the "
                           "packaged code, not the commit, is what reproduces", MANIFEST))
    seeds = ctx.section("seeds")
    run = ctx.run_record()
    metrics = ctx.section("metrics")
    if run is not None:
        if seeds.get("task2") != run.get("seed"):
            out.append(error(rid, f"manifest seed {seeds.get('task2')!r} differs from run.json's "
                             f"{run.get('seed')!r}", MANIFEST))
        best = run.get("best_valid_auc")
        if not isinstance(metrics.get("task2_best_valid_auc"), (int, float)):
            out.append(error(rid, "no recorded task2_best_valid_auc", MANIFEST))
        elif best != metrics.get("task2_best_valid_auc"):
            out.append(error(rid, f"task2_best_valid_auc {metrics.get('task2_best_valid_auc')} differs from "
                             f"run.json's {best}", MANIFEST))
        run_git = (run.get("env") or {}).get("git") or {}
        if run_git.get("commit") and git.get("commit") and run_git.get("commit") != git.get("commit"):
            out.append(warning(rid, f"trained at commit {str(run_git['commit'])[:12]}, packaged at "
                               f"{str(git['commit'])[:12]}: check the code did not change in between", MANIFEST))
        rel = ctx.one("metrics")
        if rel is not None and isinstance(best, (int, float)):
            out += _metrics_consistency(ctx, rid, rel, best)
    data = ctx.section("data")
    if not data:
        out.append(error(rid, "no input data hashes", MANIFEST))
    elif ctx.data is not None:
        from core.io import sha256_file

        for name in ("train", "valid", "test", "item_info"):
            rec = data.get(name)
            path = ctx.data_file(name)
            if not isinstance(rec, dict) or path is None:
                continue
            if rec.get("sha256") != sha256_file(path):
                out.append(error(rid, f"{name}.parquet under --data differs from the one the package was "
                                 f"built from (sha256 {str(rec.get('sha256'))[:12]}...)", str(path)))
    return out


def _metrics_consistency(ctx, rid, rel, best) -> list:
    import json

    try:
        lines = ctx.read_bytes(rel, 16 * 1024 * 1024).decode("utf-8").splitlines()
        aucs = [json.loads(x).get("valid_auc") for x in lines if x.strip()]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return [error(rid, "not readable JSON lines", rel)]
    aucs = [a for a in aucs if isinstance(a, (int, float)) and not math.isnan(a)]
    if aucs and max(aucs) != best:
        return [error(rid, f"best valid_auc per epoch is {max(aucs)}, run.json says {best}", rel)]
    return []
