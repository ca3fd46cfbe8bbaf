"""`harness validate`: check a data root or one file against the contract, and the cross-file facts.

Cross-file facts checked on a data root: item ids within the vocabulary that item_info defines, the
item files listing exactly items 1..N, one cover image per item (missing or unreadable covers follow
core/covers.py: warnings up to 1 % of the items, errors beyond or with `strict`). A prediction file
is checked against the test IDs when a test file is given.

`require_all` makes an absent file an error when a pipeline stage reads it (`required_files`): the
train, valid, test and item_info files always, item_feature and the covers for Task 1 (tracks 1 and
3). item_emb.parquet and item_seq.parquet are read by no stage; their absence stays a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from core.challenge import DATASET_DIR, SCORE_COLUMNS, TRACKS
from core.covers import cover_findings, scan_covers
from core.errors import Finding, UserError, error, warning
from core.schemas import validate_frame

# relative path -> kind, in the order a report lists them
DATA_FILES = {
    f"{DATASET_DIR}/train.parquet": "train",
    f"{DATASET_DIR}/valid.parquet": "valid",
    f"{DATASET_DIR}/test.parquet": "test",
    f"{DATASET_DIR}/item_info.parquet": "item_info",
    "item_feature.parquet": "item_feature",
    "item_emb.parquet": "item_emb",
    "item_seq.parquet": "item_seq",
}
IMAGES = "item_images"
def required_files(track: int = 3) -> list[str]:
    """The data files the pipeline's stages read for `track` (relative paths; the covers as item_images/).

    train, valid (harness train), test (predict, verify) and item_info (Track 2's embeddings; Task 1
    copies its item_tags; verify compares against it) always; item_feature and the covers for Task 1.
    """
    if track not in TRACKS:
        raise UserError(f"unknown track {track!r}; choose 1, 2 or 3")
    rel = [f"{DATASET_DIR}/train.parquet", f"{DATASET_DIR}/valid.parquet", f"{DATASET_DIR}/test.parquet", f"{DATASET_DIR}/item_info.parquet"]
    if track in (1, 3):
        rel += ["item_feature.parquet", IMAGES + "/"]
    return rel


@dataclass
class Report:
    """What validation found: per-file status, absent files, findings."""

    root: str
    files: dict = field(default_factory=dict)  # relative path -> {"kind", "rows", "ok"}
    absent: list = field(default_factory=list)
    findings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "exit_code": 0 if self.ok else 1, "root": self.root, "files": self.files,
                "absent": self.absent, "findings": [f.to_dict() for f in self.findings]}


def read_table(path: Path, kind: str) -> tuple[pl.DataFrame | None, Finding | None]:
    """Read a parquet or CSV file; an unreadable file is a finding, not a traceback."""
    try:
        if path.suffix == ".csv":
            overrides = {"ID": pl.Int64, "label": pl.Int64, **{c: pl.Float64 for c in SCORE_COLUMNS}}
            header = path.open("r", encoding="utf-8").readline().strip().split(",")
            return pl.read_csv(path, schema_overrides={c: t for c, t in overrides.items() if c in header}), None
        return pl.read_parquet(path), None
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
        what = "CSV" if path.suffix == ".csv" else "parquet"
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return None, error("io.unreadable", f"cannot read this {what} file ({first}); re-download or "
                           f"regenerate it", str(path))


def kind_of(path: Path) -> str:
    """Which contract a single file follows, from its name (and a CSV's header)."""
    stem = path.stem
    for kind in ("train", "valid", "test", "item_info", "item_feature", "item_emb", "item_seq"):
        if path.suffix == ".parquet" and stem == kind:
            return kind
    if path.suffix == ".csv":
        try:
            header = path.open("r", encoding="utf-8").readline().strip().split(",")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read this CSV file ({exc})", path=path)
        if "label" in header:
            return "ground_truth"
        return "prediction"
    raise UserError("cannot tell which file of the challenge this is: name it like the official file "
                    "(train.parquet, item_info.parquet, ..., prediction.csv) or pass a data root", path=path)


def n_items_of(root: Path) -> int | None:
    """The item vocabulary size N (ids 1..N), from item_info (rows - 1) or item_feature."""
    info = root / DATASET_DIR / "item_info.parquet"
    feat = root / "item_feature.parquet"
    try:
        if info.is_file():
            return pl.scan_parquet(info).select(pl.len()).collect().item() - 1
        if feat.is_file():
            return pl.scan_parquet(feat).select(pl.col("item_id").max()).collect().item()
    except (OSError, pl.exceptions.PolarsError):
        return None
    return None


def check_prediction_ids(pred: pl.DataFrame, test: pl.DataFrame, pred_path: str, test_path: str) -> list[Finding]:
    """A prediction has exactly the test IDs, in test order."""
    if "ID" not in pred.columns or "ID" not in test.columns:
        return []
    if pred.height != test.height:
        return [error("prediction.row_count", f"{pred.height:,} rows, but {test_path} has {test.height:,}: "
                      "predict every test row exactly once", pred_path)]
    diff = pred.select((pl.col("ID") != test["ID"]).alias("d"), pl.int_range(pl.len()).alias("row")).filter("d")
    if diff.height:
        rows = ", ".join(str(r) for r in diff["row"].head(5).to_list())
        return [error("prediction.ids", f"{diff.height:,} IDs differ from {test_path} (first rows: {rows}); "
                      "write rows in test order with the test IDs", pred_path)]
    return []


def check_images(root: Path, n_items: int, strict: bool = False) -> tuple[list[Finding], int]:
    """One cover file `<item_id>.jpg` per item 1..N, each non-empty and starting like an image; the
    findings follow core/covers.py. Returns the findings and the covers found."""
    folder = root / IMAGES
    scan = scan_covers(folder, n_items, read_headers=True)
    return cover_findings(scan, folder, strict=strict), scan.found


def validate_root(root: str | Path, require_all: bool = False, strict: bool = False, track: int = 3) -> Report:
    """Check every challenge file found under `root`; absent files are listed, and are errors with
    `require_all` when the pipeline's stages for `track` read them. `strict`: any missing or unreadable
    cover is an error (else up to core.covers.MAX_BAD_SHARE are warnings)."""
    required = set(required_files(track))
    root = Path(root)
    if not root.exists():
        raise UserError("no such data folder; pass the MicroLens_1M_MMCTR folder (it holds "
                        f"{DATASET_DIR}/ and item_feature.parquet)", path=root)
    if not root.is_dir():
        raise UserError("not a folder", path=root)
    report = Report(root=str(root))
    n_items = n_items_of(root)
    frames = {}
    for rel, kind in DATA_FILES.items():
        path = root / rel
        if not path.is_file():
            report.absent.append(rel)
            continue
        frame, problem = read_table(path, kind)
        if problem:
            report.findings.append(problem)
            report.files[rel] = {"kind": kind, "rows": None, "ok": False}
            continue
        found = validate_frame(frame, kind, str(path), n_items=n_items)
        if kind in ("item_feature", "item_emb") and n_items is not None and frame.height != n_items:
            found.append(error("data.item_count", f"{frame.height:,} items, but item_info defines "
                               f"{n_items:,} (ids 1..{n_items}); the files come from different releases",
                               str(path)))
        report.findings += found
        report.files[rel] = {"kind": kind, "rows": frame.height, "ok": not found}
        if kind == "test":
            frames["test"] = frame.select("ID")
        del frame
    if (root / IMAGES).is_dir():
        if n_items is not None:
            found, n_covers = check_images(root, n_items, strict=strict)
            report.findings += found
            report.files[IMAGES] = {"kind": "images", "rows": n_covers,
                                    "ok": not any(f.severity == "error" for f in found)}
    else:
        report.absent.append(IMAGES + "/")
    for rel in report.absent:
        needed = rel in required
        make = error if require_all and needed else warning
        note = f"; the pipeline's stages for track {track} read it" if needed else "; no pipeline stage reads it"
        report.findings.append(make("data.absent", "absent" + note, str(root / rel)))
    if not report.files:
        raise UserError(f"no challenge files found; expected {DATASET_DIR}/train.parquet and the others of "
                        "MicroLens_1M_MMCTR", path=root)
    return report


def validate_file(path: str | Path, test: str | Path | None = None, n_items: int | None = None) -> Report:
    """Check one parquet or CSV file; a prediction is compared with the test IDs when `test` is given."""
    path = Path(path)
    if not path.exists():
        raise UserError("no such file", path=path)
    kind = kind_of(path)
    report = Report(root=str(path.parent))
    frame, problem = read_table(path, kind)
    if problem:
        report.findings.append(problem)
        report.files[path.name] = {"kind": kind, "rows": None, "ok": False}
        return report
    found = validate_frame(frame, kind, str(path), n_items=n_items)
    if test is not None:
        test = Path(test)
        if not test.is_file():
            raise UserError("no such test file; pass MicroLens_1M_x1/test.parquet", path=test)
        test_frame, problem = read_table(test, "test")
        if problem:
            raise UserError("cannot read the test file; re-download it", path=test)
        found += check_prediction_ids(frame, test_frame, str(path), str(test))
    report.findings += found
    report.files[path.name] = {"kind": kind, "rows": frame.height, "ok": not found}
    return report


def validate_path(path: str | Path, test: str | Path | None = None, require_all: bool = False,
                  strict: bool = False, track: int = 3) -> Report:
    path = Path(path)
    if path.is_dir():
        if test is not None:
            raise UserError("--test applies to a single prediction file, not a data root", path=path)
        return validate_root(path, require_all=require_all, strict=strict, track=track)
    return validate_file(path, test=test)


def render(report: Report) -> str:
    """The human report: one line per file, findings under it, absent files, a verdict."""
    lines = []
    by_path: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_path.setdefault(f.path, []).append(f)
    root = Path(report.root)
    for rel, info in report.files.items():
        full = str(root / rel)
        rows = f"{info['rows']:,} rows" if info["rows"] is not None else "unread"
        errors = [f for f in by_path.get(full, []) if f.severity == "error"]
        lines.append(f"{'FAIL' if errors else 'ok  '}  {rel}  ({info['kind']}, {rows})")
        for f in by_path.pop(full, []):
            lines.append(f"        [{f.id}] {f.severity}: {f.message}")
    for path, found in by_path.items():
        for f in found:
            lines.append(f"{'FAIL' if f.severity == 'error' else 'warn'}  {path}  [{f.id}] {f.message}")
    n_err = sum(f.severity == "error" for f in report.findings)
    n_warn = len(report.findings) - n_err
    verdict = "valid" if report.ok else "INVALID"
    lines.append(f"{verdict}: {len(report.files)} checked, {len(report.absent)} absent, "
                 f"{n_err} error(s), {n_warn} warning(s)")
    return "\n".join(lines)
