"""Small pure pieces: the quality metric, fusion, PCA, the projector's starting point, shards, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import UserError
from task1.cache import shard_chunks
from task1.config import make_config
from task1.data import Histories, left_pad_tags
from task1.quality import next_item_recall
from task1.reducers import ContrastiveProjector, fit_fusion, fit_pca, project


def histories(seqs: list[list[int]], targets: list[int]) -> Histories:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return Histories(seq_offsets=offsets, seq_items=np.concatenate(seqs).astype(np.int64),
                     eval_users=np.arange(len(seqs)), eval_target=np.array(targets), n_users=len(seqs))


def unit(rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_counts_the_target_among_the_nearest_items():
    # items 1-3 point one way, 4-6 another; row 0 is padding
    emb = np.vstack([np.zeros(2), unit([[1, 0.1], [1, 0.2], [1, 0.3], [0.1, 1], [0.2, 1], [0.3, 1]])])
    hist = histories([[1, 2], [4], [1]], [3, 6, 5])
    q = next_item_recall(emb, hist, ks=(1, 3))
    # user 0: history items excluded, item 3 is the nearest left -> hit@1;
    # user 1: 5 and 6 are nearest to 4 (5 first) -> rank 2; user 2: target 5 on the far side -> rank 4
    assert q["recall@1"] == pytest.approx(1 / 3, abs=1e-6) and q["recall@3"] == pytest.approx(2 / 3, abs=1e-6)
    assert q["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3, abs=1e-6)
    # popularity: counts over the sequences (1: twice, 2 and 4 once), ties broken at random:
    # user 0 has 1 item above the target and 3 level with it, users 1 and 2 have 2 above and 3 level
    assert q["popularity"]["recall@3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3, abs=1e-6)
    assert q["random"]["recall@1"] == pytest.approx((1 / 4 + 1 / 5 + 1 / 5) / 3, abs=1e-6)


def test_recall_with_all_items_equal_is_chance():
    emb = np.vstack([np.zeros(3), unit(np.ones((10, 3)))])
    hist = histories([[1], [2, 3]], [5, 9])
    q = next_item_recall(emb, hist, ks=(3,))
    assert q["recall@3"] == pytest.approx(q["random"]["recall@3"]) == pytest.approx((3 / 9 + 3 / 8) / 2, abs=1e-6)


def test_fusion_fills_unusable_rows_and_balances_variance():
    rng = np.random.default_rng(0)
    img = unit(rng.normal(size=(50, 8)))
    txt = unit(rng.normal(size=(50, 3)) * [5, 1, 1])
    ok_img = np.ones(50, bool)
    ok_img[[3, 7]] = False
    img[[3, 7]] = 0.0  # the cache's placeholder
    blocks = {"image": (img.astype(np.float32), ok_img), "text": (txt.astype(np.float32), np.ones(50, bool))}
    fusion = fit_fusion(blocks, ("image", "text"), balance=True)
    mean = img.astype(np.float32).astype(np.float64)[ok_img].mean(axis=0)
    np.testing.assert_allclose(fusion.fill["image"], mean / np.linalg.norm(mean), atol=1e-12)
    x = fusion.apply(blocks)
    assert x.shape == (50, 11)
    for block in (x[:, :8], x[:, 8:]):
        assert ((block - block.mean(axis=0)) ** 2).sum(axis=1).mean() == pytest.approx(1.0)
    with pytest.raises(UserError, match="no item has a usable image"):
        fit_fusion({"image": (img, np.zeros(50, bool))}, ("image",), balance=True)


def test_pca_explained_variance_and_signs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 130)) * np.r_[np.full(128, 3.0), 0.5, 0.5]
    pca = fit_pca(x, 128)
    total = np.trace(np.cov(x.T))
    assert pca.explained_variance_ratio == pytest.approx(pca.eigenvalues.sum() / total)
    assert 0.98 < pca.explained_variance_ratio < 1.0
    big = np.argmax(np.abs(pca.components), axis=0)
    assert np.all(pca.components[big, np.arange(128)] > 0)
    np.testing.assert_allclose(np.linalg.norm(pca.transform(x), axis=1), 1.0)
    with pytest.raises(UserError, match="fewer than 128"):
        fit_pca(x[:, :100], 128)


def test_untrained_projector_is_the_pca_embedding():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 160))
    wide = fit_pca(x, 150)
    torch.manual_seed(0)
    model = ContrastiveProjector(wide, hidden=16).eval()
    np.testing.assert_allclose(project(model, x), wide.top(128).transform(x), atol=1e-5)


@pytest.mark.parametrize("n_chunks,n", [(1, 1), (7, 3), (3, 5), (90, 8)])
def test_shards_cover_every_chunk_once(n_chunks, n):
    parts = [shard_chunks(n_chunks, (k, n)) for k in range(1, n + 1)]
    assert sorted(c for p in parts for c in p) == list(range(n_chunks))
    assert all(p == list(range(p[0], p[-1] + 1)) for p in parts if p)


def test_tags_keep_the_last_five_left_padded():
    tags = left_pad_tags([[1, 2], [], [1, 2, 3, 4, 5, 6, 7]], 3)
    assert tags.tolist() == [[0] * 5, [0, 0, 0, 1, 2], [0] * 5, [3, 4, 5, 6, 7]]


def test_config_profiles_and_overrides():
    off = make_config("offline")
    assert off.image_model == "packaged:efficientnet-lite0" and off.text_prefix == ""
    ref = make_config("reference", {"contrastive": {"epochs": 2}, "modalities": ["text"]})
    assert ref.text_model == "intfloat/multilingual-e5-base" and ref.text_prefix == "passage: "
    assert ref.contrastive.epochs == 2 and ref.contrastive.temperature == 0.05 and ref.modalities == ("text",)
    for bad, msg in (({"modalities": ["audio"]}, "modalities"), ({"reducer": "umap"}, "unknown reducer"),
                     ({"chunk_size": 0}, "chunk_size"), ({"contrastive": {"tau": 1}}, "contrastive.tau"),
                     ({"contrastive": {"input_dim": 64}}, "input_dim >= 128")):
        with pytest.raises(UserError, match=msg):
            make_config("offline", bad, source="x.json")
    with pytest.raises(UserError, match="unknown profile"):
        make_config("fast")


def test_decoding_workers_fit_the_machine(monkeypatch):
    import torch

    from task1.pipeline import effective_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert effective_workers(4, torch.device("cpu")) == 1  # one core stays with the encoder
    assert effective_workers(4, torch.device("cuda")) == 2
    assert effective_workers(0, torch.device("cpu")) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert effective_workers(4, torch.device("cpu")) == 0
