"""The data path: parquet -> contiguous tensors once, then every batch is an index gather.

- `read_split` reads train/valid/test with polars into tensors (ids as int32; the history as one
  (N, 64) block) and checks what a model cannot survive: missing columns, no rows, item ids beyond the
  item table, levels outside 0..10. `read_item_info` reads the item table (positional: row i = item i).
- `iterate_batches` yields batches as dicts of tensors. Shuffling uses a seeded `torch.Generator`, so
  the order is reproducible and independent of the global RNG. With `length_aware=True` the shuffled
  rows are sorted by history length inside chunks of `bucket_batches` batches, the batches are then
  shuffled, and each batch is trimmed to its longest history (histories are left-padded: trimming
  drops leading zero columns). Under DDP each rank takes an interleaved share of every global batch.

No pandas, no per-row Python, no `to_list()`: the official loader's per-batch `.iloc` made epochs slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import torch

from core.challenge import DATASET_DIR, HISTORY_LEN, LEVEL_VOCAB
from core.errors import UserError

ROW_COLUMNS = ("item_seq", "item_id", "likes_level", "views_level")


def split_path(data_dir: str | Path, name: str) -> Path:
    """Path of `<name>.parquet` under DATA_DIR/MicroLens_1M_x1/ (or DATA_DIR itself); UserError if absent."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError("data folder not found; pass the dataset root that holds MicroLens_1M_x1/",
                        path=data_dir)
    for candidate in (data_dir / DATASET_DIR / f"{name}.parquet", data_dir / f"{name}.parquet"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{name}.parquet not found (looked in {DATASET_DIR}/ and the folder itself); "
                    "pass the dataset root that holds MicroLens_1M_x1/", path=data_dir)


def _read_parquet(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    if not path.is_file():
        raise UserError("file not found", path=path)
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as e:  # polars raises several types for a file that is not parquet
        raise UserError(f"cannot read as parquet ({type(e).__name__}); is the file complete?", path=path) from e
    if columns is not None:
        missing = [c for c in columns if c not in schema]
        if missing:
            raise UserError(f"missing column(s) {missing}; found {list(schema)}", path=path)
    return pl.read_parquet(path, columns=columns)


def _matrix(frame: pl.DataFrame, column: str, width: int | None, path: Path, dtype=None) -> np.ndarray:
    """A fixed-width array/list column as an (N, width) numpy array: a writable C-contiguous copy in
    `dtype`, or with dtype=None polars' own (possibly read-only) buffer, for checks before a cast."""
    s = frame[column]
    if isinstance(s.dtype, pl.List):
        lengths = s.list.len()
        if lengths.n_unique() > 1 or (len(s) and lengths.null_count()):
            raise UserError(f"column {column} must have one length in every row "
                            f"(found {lengths.min()}..{lengths.max()})", path=path)
        s = s.list.to_array(int(lengths[0]) if len(s) else 0)
    if not isinstance(s.dtype, pl.Array):
        raise UserError(f"column {column} must be a fixed-size array, found {s.dtype}", path=path)
    if s.null_count():
        raise UserError(f"column {column} has null rows", path=path)
    arr = s.to_numpy()
    if arr.ndim != 2:
        raise UserError(f"column {column} must be 2-dimensional, found shape {arr.shape}", path=path)
    if width is not None and arr.shape[1] != width:
        raise UserError(f"column {column} has width {arr.shape[1]}, expected {width}", path=path)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise UserError(f"column {column} holds NaN or infinite values", path=path)
    if dtype is None:
        return arr
    return np.array(arr, dtype=dtype, order="C", copy=True)  # writable, owned by torch afterwards


def _vector(frame: pl.DataFrame, column: str, path: Path) -> np.ndarray:
    s = frame[column]
    if s.null_count():
        raise UserError(f"column {column} has null rows", path=path)
    if not s.dtype.is_integer():
        raise UserError(f"column {column} must be integer, found {s.dtype}", path=path)
    return s.to_numpy()


# ---------------------------------------------------------------------------------------------
# Item table


@dataclass
class ItemInfo:
    """item_info.parquet as tensors: row i is item i, row 0 the padding item."""

    path: str
    item_emb: torch.Tensor  # (n_items, E) float32, frozen inside the model
    item_tags: torch.Tensor  # (n_items, T) int64

    @property
    def n_items(self) -> int:
        return int(self.item_emb.shape[0])

    @property
    def n_tags(self) -> int:
        return int(self.item_tags.max()) + 1 if self.item_tags.numel() else 1


def read_item_info(path: str | Path, emb_dim: int | None = 128) -> ItemInfo:
    """Read item_info.parquet (item_id, item_tags array[i64, 5], item_emb_d128 array[f64, 128]).

    Raises UserError for a missing file, a wrong embedding width, rows not in item_id order 0..N-1, and
    error findings of `core.schemas.validate_item_info`.
    """
    from core.schemas import validate_item_info

    path = Path(path)
    frame = _read_parquet(path, ["item_id", "item_tags", "item_emb_d128"])
    if frame.height < 2:
        raise UserError("item_info has fewer than 2 rows (padding row 0 plus items)", path=path)
    ids = _vector(frame, "item_id", path)
    if not np.array_equal(ids, np.arange(frame.height)):
        raise UserError("item_info rows must be in item_id order 0..N-1 (row i = item i, row 0 = padding); "
                        "sort by item_id and keep the padding row", path=path)
    emb = _matrix(frame, "item_emb_d128", None, path, np.float32)
    if emb_dim is not None and emb.shape[1] != emb_dim:
        raise UserError(f"item_emb_d128 has width {emb.shape[1]}, expected {emb_dim}; "
                        f"write {emb_dim}-d embeddings (or set the model's item_emb_dim)", path=path)
    tags = _matrix(frame, "item_tags", None, path, np.int64)
    if tags.size and tags.min() < 0:
        raise UserError("item_tags holds negative ids", path=path)
    errors = [f for f in validate_item_info(frame, path=str(path)) if f.severity == "error"]
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0].message}{more}", path=path)
    return ItemInfo(str(path), torch.from_numpy(emb), torch.from_numpy(tags))


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass
class Split:
    """train, valid or test as contiguous tensors (row order = file order)."""

    path: str
    item_seq: torch.Tensor  # (N, 64) int32, left-padded with 0, most recent last
    item_id: torch.Tensor  # (N,) int32
    likes_level: torch.Tensor  # (N,) int32
    views_level: torch.Tensor  # (N,) int32
    lengths: torch.Tensor  # (N,) int32, real items in item_seq
    label: torch.Tensor | None = None  # (N,) float32
    ids: torch.Tensor | None = None  # (N,) int64, the test file's ID column

    def __len__(self) -> int:
        return int(self.item_id.shape[0])

    def to(self, device) -> "Split":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Split(self.path, move(self.item_seq), move(self.item_id), move(self.likes_level),
                     move(self.views_level), move(self.lengths), move(self.label), move(self.ids))


def read_split(path: str | Path, n_items: int | None = None, labelled: bool = True) -> Split:
    """Read train/valid (labelled) or test (`labelled=False`: needs the ID column).

    Args:
        path: the parquet file.
        n_items: rows of the item table; an item id >= n_items is an error (it has no embedding).
        labelled: read and check `label` (0/1); otherwise read `ID`.
    """
    path = Path(path)
    columns = list(ROW_COLUMNS) + (["label"] if labelled else ["ID"])
    frame = _read_parquet(path, columns)
    if frame.height == 0:
        raise UserError("the file has no rows; regenerate or re-download the split", path=path)
    seq = _matrix(frame, "item_seq", None, path)  # checked, then cast once to int32
    if not np.issubdtype(seq.dtype, np.integer):
        raise UserError(f"column item_seq must hold integer item ids, found {seq.dtype}", path=path)
    item_id = _vector(frame, "item_id", path)
    for name, values in (("item_seq", seq), ("item_id", item_id)):
        lo, hi = int(values.min()), int(values.max())
        if lo < 0:
            raise UserError(f"{name} holds a negative item id ({lo})", path=path)
        if hi >= 2**31 - 1:
            raise UserError(f"{name} holds item id {hi}, too large for an item table", path=path)
        if n_items is not None and hi >= n_items:
            raise UserError(f"{name} holds item id {hi}, beyond the item table ({n_items} rows, ids 0.."
                            f"{n_items - 1}); use the item_info that belongs to this dataset", path=path)
    if int(item_id.min()) == 0:
        raise UserError("item_id 0 is the padding id and cannot be a target item", path=path)
    levels = {}
    for name in ("likes_level", "views_level"):
        v = _vector(frame, name, path)
        if int(v.min()) < 0 or int(v.max()) >= LEVEL_VOCAB:
            raise UserError(f"{name} must be in 0..{LEVEL_VOCAB - 1}, found {int(v.min())}..{int(v.max())}",
                            path=path)
        levels[name] = torch.from_numpy(v.astype(np.int32))
    seq32 = torch.from_numpy(np.array(seq, dtype=np.int32, order="C"))
    real = seq32 > 0  # (N, 64)
    lengths = real.sum(dim=1, dtype=torch.int32)  # (N,)
    first = torch.where(lengths > 0, real.int().argmax(dim=1), real.shape[1])  # (N,) first real slot
    bad = torch.nonzero(first != real.shape[1] - lengths)
    if len(bad):  # trimming assumes all padding on the left
        raise UserError(f"item_seq must be left-padded with 0, most recent item last; row {int(bad[0])} has a 0 "
                        f"between items ({len(bad)} such rows)", path=path)
    split = Split(str(path), seq32, torch.from_numpy(item_id.astype(np.int32)), levels["likes_level"],
                  levels["views_level"], lengths)
    if labelled:
        label = _vector(frame, "label", path)
        if not np.isin(label, (0, 1)).all():
            raise UserError("label must be 0 or 1", path=path)
        split.label = torch.from_numpy(label.astype(np.float32))
    else:
        split.ids = torch.from_numpy(_vector(frame, "ID", path).astype(np.int64))
    return split


# ---------------------------------------------------------------------------------------------
# Batches


def batch_order(n: int, batch_size: int, lengths: torch.Tensor | None, *, shuffle: bool,
                generator: torch.Generator | None, length_aware: bool, bucket_batches: int = 64) -> list[torch.Tensor]:
    """Row indices of each global batch, in the order they are used.

    shuffle + length_aware: a seeded permutation, stably sorted by length inside chunks of
    `bucket_batches` batches, cut into batches, batch order permuted. Not shuffled + length_aware: all
    rows sorted by length (evaluation: fewer padded columns; callers scatter scores back by index).
    """
    if shuffle:
        idx = torch.randperm(n, generator=generator)
    else:
        idx = torch.arange(n)
    if length_aware and lengths is not None:
        keys = lengths.cpu()[idx].long()
        if shuffle:
            chunk = torch.arange(n) // (batch_size * bucket_batches)
            keys = chunk * (int(keys.max()) + 1) + keys
        idx = idx[torch.argsort(keys, stable=True)]
    batches = list(idx.split(batch_size))
    if shuffle and length_aware:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def gather(split: Split, rows: torch.Tensor, max_len: int, trim: bool) -> dict[str, torch.Tensor]:
    """One batch as a dict of tensors; item_seq cut to the last `max_len` columns, then to the
    longest history in the batch when `trim` (at least one column)."""
    rows = rows.to(split.item_id.device)
    width = max_len
    if trim:
        width = max(1, min(max_len, int(split.lengths[rows].max())))
    batch = {
        "item_seq": split.item_seq[rows, -width:],  # (b, width)
        "item_id": split.item_id[rows],  # (b,)
        "likes_level": split.likes_level[rows],  # (b,)
        "views_level": split.views_level[rows],  # (b,)
        "rows": rows,  # (b,)
    }
    if split.label is not None:
        batch["label"] = split.label[rows]  # (b,)
    return batch


def iterate_batches(split: Split, batch_size: int, *, max_len: int, shuffle: bool = False,
                    generator: torch.Generator | None = None, length_aware: bool = True,
                    bucket_batches: int = 64, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
    """Yield batches of `split`; each carries `rows` (indices into the split) and `global_size`.

    With world_size > 1, rank r gets rows r, r + world_size, ... of every global batch (equal shares up
    to one row), so the union over ranks is exactly the single-process batch. A last global batch with
    fewer rows than ranks is skipped on every rank (each rank must run every step).
    """
    for rows in batch_order(len(split), batch_size, split.lengths, shuffle=shuffle, generator=generator,
                            length_aware=length_aware, bucket_batches=bucket_batches):
        global_size = len(rows)
        if world_size > 1:
            if global_size < world_size:
                continue
            rows = rows[rank::world_size]
        batch = gather(split, rows, max_len, trim=length_aware)
        batch["global_size"] = global_size
        yield batch
