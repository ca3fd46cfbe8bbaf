"""Reading the MicroLens_1M_MMCTR inputs Task 1 needs: items (titles, tags, cover paths) and train histories.

Everything is ordered by item id, never by file or directory order: the covers are looked up as
`item_images/<item_id>.jpg` for ids 1..N taken from item_feature.parquet, sorted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from core.challenge import DATASET_DIR, TAGS_LEN
from core.errors import UserError

ITEM_FEATURE = "item_feature.parquet"
TRAIN = f"{DATASET_DIR}/train.parquet"
OFFICIAL_ITEM_INFO = f"{DATASET_DIR}/item_info.parquet"
IMAGES = "item_images"


@dataclass
class Items:
    """Items 1..N in id order. Index j of each array is item j + 1."""

    n: int
    titles: list[str]  # "" where the title is missing or blank
    tags: np.ndarray  # (N + 1, 5) int64, left-padded with 0, row 0 all zeros
    image_dir: Path

    def image_path(self, item_id: int) -> Path:
        return self.image_dir / f"{item_id}.jpg"

    def titles_sha256(self) -> str:
        h = hashlib.sha256()
        for t in self.titles:
            h.update(t.encode("utf-8") + b"\0")
        return h.hexdigest()

    def ids_sha256(self) -> str:
        return hashlib.sha256(f"items 1..{self.n}".encode()).hexdigest()


def check_data_dir(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError("data folder not found; pass the MicroLens_1M_MMCTR folder to --data "
                        "(or make one with `harness synth DIR`)", path=data_dir)
    if not (data_dir / ITEM_FEATURE).is_file():
        raise UserError(f"{ITEM_FEATURE} not found: is this the MicroLens_1M_MMCTR folder? "
                        "(`harness synth DIR` makes one)", path=data_dir / ITEM_FEATURE)
    return data_dir


def _read(path: Path, columns: list[str]) -> pl.DataFrame:
    try:
        schema = pl.read_parquet_schema(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise UserError(f"cannot read parquet ({type(e).__name__}); replace the file with the official one",
                        path=path) from None
    missing = [c for c in columns if c not in schema]
    if missing:
        raise UserError(f"column {missing[0]!r} missing (has {', '.join(schema)}); expected the official schema",
                        path=path)
    return pl.read_parquet(path, columns=columns)


def left_pad_tags(tag_lists: list, n: int) -> np.ndarray:
    """(N + 1, 5): each item's last five tags, right-aligned, zeros before; row 0 zeros.

    Keeping the last five matches the dataset's own item_info (checked against it when present).
    """
    out = np.zeros((n + 1, TAGS_LEN), dtype=np.int64)
    for j, tags in enumerate(tag_lists):
        if tags:
            last = list(tags)[-TAGS_LEN:]
            out[j + 1, TAGS_LEN - len(last):] = last
    return out


def read_items(data_dir: Path) -> Items:
    """item_feature.parquet sorted by item_id; ids must be exactly 1..N."""
    path = data_dir / ITEM_FEATURE
    frame = _read(path, ["item_id", "item_title", "item_tags"]).sort("item_id")
    ids = frame["item_id"].to_numpy()
    n = len(ids)
    if n == 0:
        raise UserError("item_feature has no rows", path=path)
    if ids[0] != 1 or ids[-1] != n or np.any(np.diff(ids) != 1):
        dup = int(ids[np.nonzero(np.diff(ids) == 0)[0][0]]) if np.any(np.diff(ids) == 0) else None
        what = f"item_id {dup} appears twice" if dup is not None else f"ids run {ids[0]}..{ids[-1]} over {n} rows"
        raise UserError(f"item ids must be exactly 1..N, one row each ({what}); use the official file", path=path)
    titles = [(t or "").strip() for t in frame["item_title"].to_list()]
    tags = left_pad_tags(frame["item_tags"].to_list(), n)
    return Items(n=n, titles=titles, tags=tags, image_dir=data_dir / IMAGES)


def official_tags(data_dir: Path, n: int) -> np.ndarray | None:
    """item_tags of the dataset's own item_info.parquet, when present and of the expected shape."""
    path = data_dir / OFFICIAL_ITEM_INFO
    if not path.is_file():
        return None
    frame = _read(path, ["item_id", "item_tags"]).sort("item_id")
    if len(frame) != n + 1:
        return None
    return np.asarray(frame["item_tags"].to_numpy(), dtype=np.int64).reshape(n + 1, TAGS_LEN)


@dataclass
class Histories:
    """Train histories in CSR form, and the held-out targets of the evaluation users.

    `seq_items[seq_offsets[u]:seq_offsets[u + 1]]` is user u's train history (item_seq without padding,
    oldest first) followed by their clicked train item(s), except that an evaluation user's clicked item
    is removed and kept in `eval_target` instead. Only train.parquet is read: never valid or test.
    """

    seq_offsets: np.ndarray  # (U + 1,)
    seq_items: np.ndarray  # (total,) 1-based item ids
    eval_users: np.ndarray  # (M,) indices into the U users
    eval_target: np.ndarray  # (M,) the held-out clicked item of each evaluation user
    n_users: int

    def history(self, u: int) -> np.ndarray:
        return self.seq_items[self.seq_offsets[u]:self.seq_offsets[u + 1]]


def read_histories(data_dir: Path, n_items: int, eval_users: int, seed: int) -> Histories:
    """Per-user sequences from train.parquet and a seeded choice of evaluation users.

    An evaluation user has a non-empty history and a clicked train item; the first clicked item (in
    row order) is held out.
    """
    path = data_dir / TRAIN
    if not path.is_file():
        raise UserError("train.parquet not found: the learned reducer and the quality metric read train "
                        "histories; pass the full MicroLens_1M_MMCTR folder to --data", path=path)
    frame = _read(path, ["user_id", "item_seq", "item_id", "label"]).with_row_index("row")
    users = frame.group_by("user_id").agg(pl.col("row").min()).sort("user_id")
    first = frame.join(users.select("row"), on="row", how="semi").sort("user_id")
    pos = frame.filter(pl.col("label") == 1).sort("row")
    uid = first["user_id"].to_numpy()
    seq = np.asarray(first["item_seq"].to_numpy(), dtype=np.int64)  # (U, 64), left-padded
    if seq.ndim != 2:
        raise UserError("item_seq must be a fixed-length array column", path=path)
    bad = (seq < 0) | (seq > n_items)
    if bad.any() or ((pos["item_id"] < 1) | (pos["item_id"] > n_items)).any():
        raise UserError(f"item ids outside 1..{n_items} (the items of item_feature.parquet)", path=path)

    u_index = {int(u): i for i, u in enumerate(uid)}
    pos_user = np.array([u_index[int(u)] for u in pos["user_id"].to_list()], dtype=np.int64)
    pos_item = pos["item_id"].to_numpy().astype(np.int64)
    hist_len = (seq > 0).sum(axis=1)

    rng = np.random.default_rng(seed)
    first_pos = {}
    for k in range(len(pos_user)):
        first_pos.setdefault(int(pos_user[k]), k)
    candidates = np.array(sorted(u for u in first_pos if hist_len[u] > 0), dtype=np.int64)
    m = min(eval_users, len(candidates))
    chosen = np.sort(rng.choice(candidates, size=m, replace=False)) if m else np.zeros(0, np.int64)
    held = np.zeros(len(pos_user), dtype=bool)
    held[[first_pos[int(u)] for u in chosen]] = True
    eval_target = pos_item[[first_pos[int(u)] for u in chosen]] if m else np.zeros(0, np.int64)

    # sequences: history (non-zero item_seq, oldest first) + kept clicked items, per user in order
    keep_user, keep_item = pos_user[~held], pos_item[~held]
    order = np.argsort(keep_user, kind="stable")
    keep_user, keep_item = keep_user[order], keep_item[order]
    n_pos = np.bincount(keep_user, minlength=len(uid))
    lengths = hist_len + n_pos
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.empty(offsets[-1], dtype=np.int64)
    pos_start = np.concatenate([[0], np.cumsum(n_pos)])
    for u in range(len(uid)):
        h = seq[u][seq[u] > 0]
        a = offsets[u]
        items[a:a + len(h)] = h
        items[a + len(h):offsets[u + 1]] = keep_item[pos_start[u]:pos_start[u + 1]]
    return Histories(seq_offsets=offsets, seq_items=items, eval_users=chosen, eval_target=eval_target,
                     n_users=len(uid))
