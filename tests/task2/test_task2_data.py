"""The data path: tensors read once, reproducible batch orders, length-aware trimming, DDP shares, errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from task2.data import batch_order, gather, iterate_batches, read_item_info, read_split, split_path


@pytest.fixture(scope="module")
def splits(tiny_data):
    items = read_item_info(split_path(tiny_data, "item_info"))
    train = read_split(split_path(tiny_data, "train"), n_items=items.n_items)
    test = read_split(split_path(tiny_data, "test"), n_items=items.n_items, labelled=False)
    return items, train, test


def test_tensors_match_the_parquet(tiny_data, splits):
    items, train, test = splits
    frame = pl.read_parquet(tiny_data / "MicroLens_1M_x1" / "train.parquet")
    seq = frame["item_seq"].to_numpy()
    assert train.item_seq.dtype == torch.int32 and train.item_seq.is_contiguous()
    assert train.item_seq.shape == (frame.height, 64)
    assert np.array_equal(train.item_seq.numpy(), seq)
    assert np.array_equal(train.item_id.numpy(), frame["item_id"].to_numpy())
    assert np.array_equal(train.lengths.numpy(), (seq > 0).sum(1))
    assert np.array_equal(train.label.numpy(), frame["label"].to_numpy().astype(np.float32))
    assert test.label is None and np.array_equal(test.ids.numpy(), np.arange(len(test)))
    info = pl.read_parquet(tiny_data / "MicroLens_1M_x1" / "item_info.parquet")
    assert items.n_items == info.height and items.item_emb.dtype == torch.float32
    np.testing.assert_allclose(items.item_emb.numpy(), info["item_emb_d128"].to_numpy(), rtol=1e-6)
    assert torch.count_nonzero(items.item_emb[0]) == 0


def test_shuffle_is_seeded_and_complete(splits):
    _, train, _ = splits
    kw = dict(shuffle=True, length_aware=True, bucket_batches=4)
    a = batch_order(len(train), 100, train.lengths, generator=torch.Generator().manual_seed(3), **kw)
    b = batch_order(len(train), 100, train.lengths, generator=torch.Generator().manual_seed(3), **kw)
    c = batch_order(len(train), 100, train.lengths, generator=torch.Generator().manual_seed(4), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert torch.equal(torch.sort(torch.cat(a)).values, torch.arange(len(train)))
    # the global RNG plays no part
    torch.manual_seed(0)
    d = batch_order(len(train), 100, train.lengths, generator=torch.Generator().manual_seed(3), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, d))


def test_length_aware_batches_are_homogeneous_and_trimmed(splits):
    _, train, _ = splits
    g = torch.Generator().manual_seed(0)
    spread_aware, spread_plain = [], []
    for batch in iterate_batches(train, 128, max_len=64, shuffle=True, generator=g, length_aware=True):
        lengths = train.lengths[batch["rows"]]
        assert batch["item_seq"].shape[1] == max(1, int(lengths.max()))
        assert torch.equal((batch["item_seq"] > 0).sum(1).int(), lengths)  # nothing real was cut
        spread_aware.append(float(lengths.max() - lengths.min()))
    for batch in iterate_batches(train, 128, max_len=64, shuffle=True, generator=g, length_aware=False):
        assert batch["item_seq"].shape[1] == 64
        lengths = train.lengths[batch["rows"]]
        spread_plain.append(float(lengths.max() - lengths.min()))
    assert np.mean(spread_aware) < 0.5 * np.mean(spread_plain)


def test_max_len_keeps_the_most_recent_items(splits):
    _, train, _ = splits
    rows = torch.arange(50)
    b = gather(train, rows, max_len=5, trim=False)
    assert torch.equal(b["item_seq"], train.item_seq[:50, -5:])


def test_ddp_shares_partition_each_global_batch(splits):
    _, train, _ = splits
    single = list(iterate_batches(train, 101, max_len=64, shuffle=True,
                                  generator=torch.Generator().manual_seed(1)))
    shares = [list(iterate_batches(train, 101, max_len=64, shuffle=True, rank=r, world_size=2,
                                   generator=torch.Generator().manual_seed(1))) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(single)
    for s, r0, r1 in zip(single, *shares):
        assert r0["global_size"] == len(s["rows"])
        assert torch.equal(torch.sort(torch.cat([r0["rows"], r1["rows"]])).values, torch.sort(s["rows"]).values)
        assert abs(len(r0["rows"]) - len(r1["rows"])) <= 1


# ---------------------------------------------------------------------------------------------
# Errors a user can cause


def _x1(root):
    return root / "MicroLens_1M_x1"


def test_item_id_beyond_the_table(tiny_copy):
    path = _x1(tiny_copy) / "valid.parquet"
    frame = pl.read_parquet(path)
    n_items = pl.read_parquet(_x1(tiny_copy) / "item_info.parquet").height
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(n_items + 5).otherwise(pl.col("item_id"))
                       .alias("item_id")).write_parquet(path)
    with pytest.raises(UserError, match=f"item id {n_items + 5}, beyond the item table") as e:
        read_split(path, n_items=n_items)
    assert str(path) in e.value.one_line()


def test_item_seq_id_beyond_the_table(tiny_copy):
    path = _x1(tiny_copy) / "train.parquet"
    with pytest.raises(UserError, match="item_seq holds item id .* beyond the item table"):
        read_split(path, n_items=10)


def test_wrong_embedding_width(tiny_copy):
    path = _x1(tiny_copy) / "item_info.parquet"
    frame = pl.read_parquet(path)
    emb = frame["item_emb_d128"].to_numpy()[:, :64]
    frame.with_columns(pl.Series("item_emb_d128", emb).cast(pl.Array(pl.Float64, 64))).write_parquet(path)
    with pytest.raises(UserError, match="item_emb_d128 has width 64, expected 128") as e:
        read_item_info(path)
    assert e.value.one_line().startswith(f"error: {path}: ")


def test_item_info_out_of_order(tiny_copy):
    path = _x1(tiny_copy) / "item_info.parquet"
    pl.read_parquet(path).reverse().write_parquet(path)
    with pytest.raises(UserError, match="item_id order"):
        read_item_info(path)


def _edit_array_column(path, column: str, dtype, edit) -> None:
    """Rewrite `path` with `edit(values)` applied to a copy of the fixed-width array column `column`."""
    frame = pl.read_parquet(path)
    values = frame[column].to_numpy().copy()
    edit(values)
    frame.with_columns(pl.Series(column, values).cast(pl.Array(dtype, values.shape[1]))).write_parquet(path)


def test_item_info_nonzero_padding_row_is_refused(tiny_copy):
    path = _x1(tiny_copy) / "item_info.parquet"
    _edit_array_column(path, "item_emb_d128", pl.Float64, lambda emb: emb.__setitem__(0, 1.0))
    with pytest.raises(UserError, match="row 0 is padding"):
        read_item_info(path)


def test_empty_test_file(tiny_copy):
    path = _x1(tiny_copy) / "test.parquet"
    pl.read_parquet(path).head(0).write_parquet(path)
    with pytest.raises(UserError, match="no rows") as e:
        read_split(path, labelled=False)
    assert str(path) in e.value.one_line()


def test_missing_files_and_columns(tiny_copy, tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        split_path(tmp_path / "nowhere", "train")
    (_x1(tiny_copy) / "valid.parquet").unlink()
    with pytest.raises(UserError, match="valid.parquet not found"):
        split_path(tiny_copy, "valid")
    path = _x1(tiny_copy) / "train.parquet"
    pl.read_parquet(path).drop("likes_level").write_parquet(path)
    with pytest.raises(UserError, match=r"missing column\(s\) \['likes_level'\]"):
        read_split(path)
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not a parquet file")
    with pytest.raises(UserError, match="cannot read as parquet"):
        read_split(bad)


def test_history_not_left_padded(tiny_copy):
    path = _x1(tiny_copy) / "train.parquet"
    seq = pl.read_parquet(path)["item_seq"].to_numpy()
    row = int(np.argmax((seq > 0).sum(1) >= 3))
    _edit_array_column(path, "item_seq", pl.Int64, lambda s: s.__setitem__((row, -2), 0))  # a hole between items
    with pytest.raises(UserError, match=f"left-padded with 0, most recent item last; row {row} "):
        read_split(path)


def test_levels_out_of_range(tiny_copy):
    path = _x1(tiny_copy) / "train.parquet"
    pl.read_parquet(path).with_columns(pl.col("views_level") + 20).write_parquet(path)
    with pytest.raises(UserError, match="views_level must be in 0..10"):
        read_split(path)
