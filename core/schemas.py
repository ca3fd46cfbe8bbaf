"""The data contract: pandera DataFrameModels (polars backend) for every file of the challenge.

Each model fixes the columns and exact dtypes as polars prints them for the official files
(docs/challenge.md, section 1). Value checks are named polars expressions (`RowCheck`,
true where a row is valid): they run inside pandera as data-level checks, and when one fails the
same expression finds the first failing row numbers for the report. Checks whose bounds depend on the
dataset's size (the item vocabulary) are added by `schema_for(kind, n_items)`, so the same contract
serves the real 91,718-row item_info and the small generated datasets.

Validation always runs with data-level checks on, whatever `PANDERA_VALIDATION_ENABLED` or
`PANDERA_VALIDATION_DEPTH` say: `validate_frame` sets pandera's config for the call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.engines import polars_engine as pe

from core.challenge import EMB_DIM, HISTORY_LEN, LEVEL_VOCAB, SCORE_COLUMNS, TAGS_LEN
from core.errors import Finding, error, warning

LEVEL_MAX = LEVEL_VOCAB - 1  # likes_level / views_level buckets 1..10 (0 is padding)


def _array(inner, width: int):
    return pa.Field(dtype_kwargs={"inner": inner, "shape": width})


# ---------------------------------------------------------------------------------------------
# Structure: columns and dtypes, exactly as the official files have them


class _Strict(pa.DataFrameModel):
    class Config:
        strict = True  # an extra column is a finding
        ordered = False
        coerce = False


class TrainRows(_Strict):
    """train.parquet and valid.parquet."""

    user_id: pl.Int64
    item_seq: pe.Array = _array(pl.Int64, HISTORY_LEN)
    item_id: pl.Int64
    likes_level: pl.Int64
    views_level: pl.Int64
    label: pl.Int64


class TestRows(_Strict):
    """test.parquet: `ID` is 0..n-1 in file order; no label."""

    ID: pl.Int64
    user_id: pl.Int64
    item_seq: pe.Array = _array(pl.Int64, HISTORY_LEN)
    item_id: pl.Int64
    likes_level: pl.Int64
    views_level: pl.Int64


class ItemInfo(_Strict):
    """MicroLens_1M_x1/item_info.parquet: positional (row i = item i), row 0 all zeros."""

    item_id: pl.Int64
    item_tags: pe.Array = _array(pl.Int64, TAGS_LEN)
    item_emb_d128: pe.Array = _array(pl.Float64, EMB_DIM)


class ItemFeature(_Strict):
    """item_feature.parquet: item ids 1..N, titles, variable-length tags, provided embeddings."""

    item_id: pl.Int64
    item_title: pl.String = pa.Field(nullable=True)
    item_tags: pe.List = pa.Field(dtype_kwargs={"inner": pl.Int64})
    likes_level: pl.Int64
    views_level: pl.Int64
    txt_emb_BERT: pe.Array = _array(pl.Float32, 768)
    img_emb_CLIPRN50: pe.Array = _array(pl.Float32, 1024)


class ItemEmb(_Strict):
    """item_emb.parquet: four alternative 128-d item embeddings."""

    item_id: pl.Int64
    item_emb_d128_v1: pe.Array = _array(pl.Float32, EMB_DIM)
    item_emb_d128_v2: pe.Array = _array(pl.Float32, EMB_DIM)
    item_emb_d128_v3: pe.Array = _array(pl.Float32, EMB_DIM)
    item_emb_d128_e4: pe.Array = _array(pl.Float32, EMB_DIM)


class ItemSeq(_Strict):
    """item_seq.parquet: each user's full history, variable length."""

    user_id: pl.Int64
    item_seq: pe.List = pa.Field(dtype_kwargs={"inner": pl.Int64})


class Prediction(_Strict):
    """prediction.csv: `ID` plus one or more of Task1, Task2, Task1&2 (scores in [0, 1])."""

    ID: pl.Int64
    Task1: Optional[pl.Float64] = pa.Field(alias="Task1")
    Task2: Optional[pl.Float64] = pa.Field(alias="Task2")
    Task1_2: Optional[pl.Float64] = pa.Field(alias="Task1&2")


class GroundTruth(_Strict):
    """ground_truth.csv as the scoring container reads it."""

    ID: pl.Int64
    label: pl.Int64


MODELS = {
    "train": TrainRows, "valid": TrainRows, "test": TestRows, "item_info": ItemInfo,
    "item_feature": ItemFeature, "item_emb": ItemEmb, "item_seq": ItemSeq, "prediction": Prediction,
    "ground_truth": GroundTruth,
}


# ---------------------------------------------------------------------------------------------
# Values: named row checks


@dataclass(frozen=True)
class RowCheck:
    """A data-level check: `expr` is true where the row is valid; `column` is what it is about."""

    name: str
    column: str
    expr: pl.Expr
    message: str


def _row_index() -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.Int64)


def _in_range(column: str, lo: int, hi: int, what: str) -> RowCheck:
    return RowCheck(f"{column}_range", column, pl.col(column).is_between(lo, hi),
                    f"{what} must be in {lo}..{hi}")


def _left_padded(column: str, width: int) -> RowCheck:
    """No 0 after a non-zero item: padding on the left, most recent item last."""
    col = pl.col(column)
    gap = pl.any_horizontal([(col.arr.get(i) != 0) & (col.arr.get(i + 1) == 0) for i in range(width - 1)])
    return RowCheck(f"{column}_left_padded", column, ~gap,
                    "histories must be left-padded with 0 (no 0 after a non-zero item)")


def _array_in_vocab(column: str, n_items: int, list_type: bool = False) -> RowCheck:
    ns = pl.col(column).list if list_type else pl.col(column).arr
    lo = 1 if list_type else 0
    ok = (ns.min().fill_null(lo) >= lo) & (ns.max().fill_null(lo) <= n_items)
    return RowCheck(f"{column}_in_vocab", column, ok,
                    f"item ids in {column} must be in {lo}..{n_items} (0 is padding)")


def _finite(column: str) -> RowCheck:
    return RowCheck(f"{column}_finite", column, pl.col(column).arr.sum().is_finite(),
                    "embeddings must be finite (no NaN or inf)")


def _positional(column: str, start: int, what: str) -> RowCheck:
    return RowCheck(f"{column}_positional", column, pl.col(column) == _row_index() + start, what)


def _unique(column: str) -> RowCheck:
    return RowCheck(f"{column}_unique", column, pl.col(column).is_unique(), f"{column} must be unique")


def _levels() -> list[RowCheck]:
    return [_in_range(c, 0, LEVEL_MAX, c) for c in ("likes_level", "views_level")]


def row_checks(kind: str, n_items: int | None = None) -> list[RowCheck]:
    """The value checks of one kind of file; those that need the vocabulary only when `n_items` is given."""
    checks: list[RowCheck] = []
    if kind in ("train", "valid", "test"):
        checks += [RowCheck("user_id_positive", "user_id", pl.col("user_id") >= 1, "user_id must be >= 1"),
                   _left_padded("item_seq", HISTORY_LEN), *_levels()]
        if kind == "test":
            checks.append(_positional("ID", 0, "test ID must be 0..n-1 in file order"))
        else:
            checks.append(RowCheck("label_binary", "label", pl.col("label").is_in([0, 1]),
                                   "label must be 0 or 1"))
        checks.append(_in_range("item_id", 1, n_items, "item_id") if n_items else
                      RowCheck("item_id_positive", "item_id", pl.col("item_id") >= 1, "item_id must be >= 1"))
        if n_items:
            checks.append(_array_in_vocab("item_seq", n_items))
    elif kind == "item_info":
        row0 = (pl.col("item_tags").arr.max() == 0) & (pl.col("item_tags").arr.min() == 0) & (
            pl.col("item_emb_d128").arr.eval(pl.element() == 0.0).arr.all())
        checks += [
            _positional("item_id", 0, "item_info is positional: row i must hold item_id i, from 0"),
            RowCheck("row0_zero", "item_emb_d128", (_row_index() != 0) | row0,
                     "row 0 is padding: its item_tags and item_emb_d128 must be all zeros"),
            _finite("item_emb_d128"),
            _left_padded("item_tags", TAGS_LEN),
            RowCheck("item_tags_nonnegative", "item_tags", pl.col("item_tags").arr.min() >= 0,
                     "item_tags must be >= 0 (0 is padding)"),
        ]
    elif kind == "item_feature":
        checks += [_positional("item_id", 1, "item_feature must list item_id 1..N in order"),
                   *_levels(), _finite("txt_emb_BERT"), _finite("img_emb_CLIPRN50")]
    elif kind == "item_emb":
        checks += [_positional("item_id", 1, "item_emb must list item_id 1..N in order")]
        checks += [_finite(f"item_emb_d128_{v}") for v in ("v1", "v2", "v3", "e4")]
    elif kind == "item_seq":
        checks += [_unique("user_id")]
        if n_items:
            checks.append(_array_in_vocab("item_seq", n_items, list_type=True))
    elif kind == "prediction":
        checks += [_positional("ID", 0, "ID must be 0..n-1 ascending, in test order")]
        for c in SCORE_COLUMNS:
            checks.append(RowCheck(f"{c}_score", c, pl.col(c).is_finite() & pl.col(c).is_between(0.0, 1.0),
                                   f"{c} scores must be finite and in [0, 1]"))
    elif kind == "ground_truth":
        checks += [_positional("ID", 0, "ID must be 0..n-1 ascending"),
                   RowCheck("label_binary", "label", pl.col("label").is_in([0, 1]), "label must be 0 or 1")]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return checks


def schema_for(kind: str, columns: list[str] | None = None, n_items: int | None = None):
    """The pandera schema of one kind of file, with its row checks attached as data-level checks."""
    schema = copy.deepcopy(MODELS[kind].to_schema())
    present = set(columns) if columns is not None else set(schema.columns)
    extra = []
    for rc in row_checks(kind, n_items):
        if rc.column not in present:
            continue
        extra.append(pa.Check(lambda data, e=rc.expr: data.lazyframe.select(e), name=rc.name, error=rc.message))
    schema.checks = list(schema.checks) + extra
    return schema


# ---------------------------------------------------------------------------------------------
# Running a schema and turning its errors into findings


def _first_rows(frame: pl.DataFrame, rc: RowCheck, limit: int = 5) -> str:
    bad = frame.select(_row_index().alias("row"), rc.expr.alias("ok"), pl.col(rc.column)).filter(
        ~pl.col("ok").fill_null(False)).head(limit)
    parts = []
    for row, value in zip(bad["row"].to_list(), bad[rc.column].to_list()):
        text = repr(value)
        parts.append(f"row {row}: {text if len(text) <= 60 else text[:57] + '...'}")
    n_bad = frame.select((~rc.expr.fill_null(False)).sum()).item()
    return f"{n_bad} row(s) fail; first: " + "; ".join(parts)


def lists_as_arrays(frame: pl.DataFrame, schema, path: str = "") -> tuple[pl.DataFrame, list[Finding]]:
    """Columns the contract types as a fixed-size array (item_seq, item_tags, the embeddings) but the file
    stores as a list, as pandas-written parquet does: read as the array when every row has the array's
    length (one warning naming the column), an error when the rows differ. Task 2 reads them the same way."""
    findings = []
    for name, column in schema.columns.items():
        want = getattr(column.dtype, "type", None)
        got = frame.schema.get(name)
        if not isinstance(want, pl.Array) or not isinstance(got, pl.List):
            continue
        width = want.shape[0] if want.shape else want.size
        lengths = frame[name].list.len()
        if frame.height and (lengths.null_count() or lengths.min() != width or lengths.max() != width):
            findings.append(error("schema.list_length", f"column {name}: a list of {lengths.min()}..{lengths.max()} "
                                  f"items per row; the official file holds exactly {width} in every row", path))
            continue
        frame = frame.with_columns(pl.col(name).list.to_array(width))
        findings.append(warning("schema.list_column", f"column {name} is stored as a list ({got}), not the "
                                f"official {want}; read as the array, every row holding {width}", path))
    return frame, findings


def validate_frame(frame: pl.DataFrame, kind: str, path: str = "", n_items: int | None = None) -> list[Finding]:
    """Validate an eager frame against the contract of `kind`; return findings (empty when all holds)."""
    if not isinstance(frame, pl.DataFrame):
        raise TypeError("validate_frame needs an eager polars DataFrame (a LazyFrame gets schema-only checks)")
    findings: list[Finding] = []
    if kind == "prediction":
        score_cols = [c for c in SCORE_COLUMNS if c in frame.columns]
        if not score_cols:
            findings.append(error("schema.prediction_columns",
                                  f"no score column: expected ID and one or more of {', '.join(SCORE_COLUMNS)}; "
                                  f"got {', '.join(frame.columns) or 'nothing'}", path))
    schema = schema_for(kind, frame.columns, n_items)
    frame, listed = lists_as_arrays(frame, schema, path)
    findings += listed
    if any(f.severity == "error" for f in listed):
        return findings  # a list column of uneven rows: the array checks below cannot read it
    checks = {rc.name: rc for rc in row_checks(kind, n_items)}
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            errors = exc.schema_errors
        except pl.exceptions.PolarsError as exc:  # a check that cannot run on this frame: a finding, not a traceback
            return findings + [error("schema.unreadable", f"cannot check this file ({str(exc).splitlines()[0][:200]})",
                                     path)]
        else:
            errors = []
    for se in errors:
        check_name = getattr(se.check, "name", None) or str(se.check)
        column = getattr(se.schema, "name", None) if se.schema is not None else None
        reason = str(getattr(se, "reason_code", "")).rsplit(".", 1)[-1].lower()
        if check_name in checks:
            rc = checks[check_name]
            msg = f"column {rc.column}: {rc.message} ({_first_rows(frame, rc)})"
            findings.append(error(f"data.{check_name}", msg, path))
            continue
        if reason == "column_not_in_dataframe":
            msg = f"missing column {se.failure_cases!s}"
        elif reason == "column_not_in_schema":
            msg = f"unexpected column {se.failure_cases!s} (the official file has no such column)"
        elif reason in ("wrong_datatype", "dtype_coercion_error"):
            got = frame.schema.get(column) if column else None
            want = schema.columns[column].dtype if column in schema.columns else "?"
            msg = f"column {column}: dtype {got}, expected {want}"
        elif reason == "series_contains_nulls":
            msg = f"column {column}: contains nulls"
        else:
            msg = f"column {column}: {check_name} failed: {str(se).splitlines()[0][:200]}"
        findings.append(error(f"schema.{reason or 'error'}", msg, path))
    return findings


# ---------------------------------------------------------------------------------------------
# Entry points for the pipeline's writers: check before writing


def validate_prediction(frame: pl.DataFrame, test_ids=None, path: str = "prediction.csv") -> list[Finding]:
    """A prediction frame against the contract and, when `test_ids` is given, the test file's IDs."""
    findings = validate_frame(frame, "prediction", path)
    if test_ids is not None and "ID" in frame.columns:
        ids = pl.Series("ID", test_ids, dtype=pl.Int64)
        if frame.height != len(ids):
            findings.append(error("prediction.row_count",
                                  f"{frame.height:,} rows, but the test file has {len(ids):,}", path))
        elif not frame["ID"].equals(ids):
            findings.append(error("prediction.ids", "IDs differ from the test file's, in value or order", path))
    return findings


def validate_item_info(frame: pl.DataFrame, n_items: int | None = None,
                       path: str = "item_info.parquet") -> list[Finding]:
    """item_info against the contract; with `n_items`, it must hold exactly rows 0..n_items."""
    findings = validate_frame(frame, "item_info", path)
    if n_items is not None and frame.height != n_items + 1:
        findings.append(error("data.item_count", f"{frame.height:,} rows, expected {n_items + 1:,} "
                              f"(padding row 0 and items 1..{n_items})", path))
    return findings
