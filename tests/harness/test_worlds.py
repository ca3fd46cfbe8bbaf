"""The generator's worlds: each in its stated regime, each with an oracle that is the true posterior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from harness.synth import SCALES, WORLDS, generate, reference_aucs, resolve, simulate
from harness.worlds import DEFAULT_WORLD, oracle_proba


@pytest.fixture(scope="module")
def demo_sims():
    """Every world at demo size, sampled without content or files (a few seconds each)."""
    return {w: simulate(SCALES["demo"], WORLDS[w], 0) for w in WORLDS}


def test_default_world_is_item_driven_like_the_real_data(demo_sims):
    """The regime of MicroLens (docs/challenge.md, section 7): item popularity alone scores at least
    0.90, and the history adds a few points on top of a history-blind oracle."""
    assert DEFAULT_WORLD == "item"
    a = reference_aucs(demo_sims["item"], 0)["auc"]
    for split in ("valid", "test"):
        assert a[split]["popularity"] >= 0.90, a[split]
        assert 0.01 <= a[split]["oracle"] - a[split]["oracle_item_only"] <= 0.06, a[split]


def test_history_worlds_are_history_driven():
    """Where the history decides the click, the history-blind oracle is far below the oracle."""
    for world, gap in (("history", 0.10), ("mean", 0.05), ("recent", 0.05)):
        a = reference_aucs(simulate(SCALES["tiny"], WORLDS[world], 0), 0)["auc"]["valid"]
        assert a["oracle"] - a["oracle_item_only"] > gap, (world, a)
        assert a["oracle_item_only"] > a["popularity"] - 0.02 and 0.4 < a["random"] < 0.6, (world, a)


@pytest.mark.parametrize("world", list(WORLDS))
def test_oracle_is_calibrated_in_every_world(demo_sims, world):
    """Within each decile of the oracle's probability the click rate is that probability: the oracle is
    the posterior the rows were drawn from, not just a good ranking (5 standard errors of 3,000 rows)."""
    sim = demo_sims[world]
    p = oracle_proba(sim.world, sim.test, SCALES["demo"].n_items)
    for rows in np.array_split(np.argsort(p, kind="stable"), 10):
        assert abs(p[rows].mean() - sim.test.label[rows].mean()) < 0.04, world


def test_worlds_differ_only_in_the_clicks(demo_sims):
    """Items' factors are shared: a world changes what a click depends on, not what the items are."""
    ref = demo_sims["item"].world
    for world in ("mean", "recent"):
        other = demo_sims[world].world
        assert np.array_equal(ref.category, other.category) and np.array_equal(ref.colour, other.colour)


def test_oracle_json_names_its_world(tmp_path):
    doc = generate(tmp_path / "mean", scale="tiny", seed=0, world="mean")
    on_disk = json.loads((tmp_path / "mean" / "oracle" / "oracle.json").read_text())
    assert on_disk["world"] == doc["world"] == "mean"
    assert on_disk["world_config"]["recency"] == 1.0 and on_disk["world_config"]["target"] == "history"
    for split in ("valid", "test"):
        assert set(on_disk["auc"][split]) >= {"oracle", "oracle_item_only", "popularity", "random"}


def test_unknown_world_is_a_user_error():
    with pytest.raises(UserError, match="unknown world .nope.; choose one of item, history, mean, recent, random"):
        resolve("tiny", "nope")


def test_closed_form_posterior_matches_the_generative_process_by_brute_force():
    """A 3-item, 2-segment world, histories of 2 items, groups of 1 click and 3 uniform negatives: the
    click rate of every (history, item) cell in 400,000 simulated users equals oracle_proba within 4
    binomial standard errors. The simulation follows the story, not the formula."""
    from harness.worlds import Split, SynthConfig, World

    rng = np.random.default_rng(0)
    cfg = SynthConfig(n_items=3, n_users=1, n_train=1, n_valid=1, n_test=1, n_tags=1, n_segments=2)
    prior = np.array([0.3, 0.7])
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])  # P(j | s)
    zeros = np.zeros(3, dtype=np.int64)
    world = World(cfg, WORLDS["history"], zeros, zeros, zeros, np.zeros(3), np.zeros(3, dtype=bool), prior,
                  np.zeros(3), np.log(p), np.log(p))
    users = 400_000
    s = rng.choice(2, size=users, p=prior)
    cum = p.cumsum(1)[s]  # (U, 3)
    draw = lambda: (rng.random((users, 1)) > cum).sum(1)  # noqa: E731  one item per user from P(. | s)
    hist = np.stack([draw(), draw()], axis=1)  # (U, 2), 0-based
    items = np.concatenate([draw()[:, None], rng.integers(0, 3, size=(users, 3))], axis=1)  # click + 3 negatives
    labels = np.zeros((users, 4), dtype=np.int64)
    labels[:, 0] = 1
    cell = np.repeat(hist[:, 0] * 9 + hist[:, 1] * 3, 4) + items.ravel()  # (history, item) as 0..26
    n = np.bincount(cell, minlength=27)
    rate = np.bincount(cell, weights=labels.ravel(), minlength=27) / np.maximum(n, 1)

    h = np.array([[a, b] for a in range(3) for b in range(3) for _ in range(3)]) + 1  # 1-based ids
    padded = np.zeros((27, 64), dtype=np.int64)
    padded[:, -2:] = h
    j = np.tile(np.arange(3), 9) + 1
    split = Split(np.arange(27), np.arange(27), padded, j, np.zeros(27, dtype=np.int64), np.full(27, 4))
    proba = oracle_proba(world, split, pool_size=3)
    se = np.sqrt(proba * (1 - proba) / np.maximum(n, 1))
    assert (n > 1_000).all()
    assert (np.abs(rate - proba) < 4 * se + 1e-3).all(), np.c_[rate, proba, n]


# ---------------------------------------------------------------------------------------------
# Sampled worlds (harness synth --world random)


def test_sampled_worlds_are_seeded_and_span_the_stated_ranges():
    from harness.worlds import sample_world_params, world_from_params

    assert sample_world_params(7) == sample_world_params(7) != sample_world_params(8)
    draws = [sample_world_params(s) for s in range(60)]
    for p in draws:
        cfg, wcfg = world_from_params(p)  # every draw builds
        assert 15_000 <= cfg.n_train <= 1_000_000 and 200 <= cfg.n_items <= 91_717
        assert 1 <= cfg.negatives <= 5 and 0.01 <= cfg.emb_scale <= 30
    sizes = sorted(p["synth"]["n_train"] for p in draws)
    assert sizes[0] < 40_000 and sizes[-1] > 400_000  # log-uniform: both ends are reached
    assert {p["world"]["target"] for p in draws} == {"segment", "history"}
    assert len({p["synth"]["negatives"] for p in draws}) == 5
    fixed = sample_world_params(7, n_train=20_000)
    assert fixed["synth"]["n_train"] == 20_000 and fixed["world"] == sample_world_params(7)["world"]


def test_world_params_name_the_bad_key():
    from harness.worlds import sample_world_params, world_from_params

    with pytest.raises(ValueError, match="unknown key `synth.n_itemz`"):
        world_from_params({"synth": {"n_itemz": 3}})
    with pytest.raises(ValueError, match="`world.gamma` must be a number"):
        world_from_params({"world": {"gamma": "steep"}})
    with pytest.raises(ValueError, match="n_users is too small"):
        world_from_params({"synth": {"n_users": 10}}, None)
    p = sample_world_params(3)
    p["synth"]["n_categories"] = 12
    with pytest.raises(ValueError, match="1 to 8"):
        world_from_params(p)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A small sampled world with one negative per click and a table far from unit norm."""
    from harness.worlds import sample_world_params

    params = sample_world_params(11, n_train=6_000)
    params["synth"].update(negatives=1, emb_scale=25.0, emb_offset=3.0, emb_anisotropy=1.0, emb_rotate=True,
                           n_valid=4_000, n_test=4_000, n_users=9_000)
    out = tmp_path_factory.mktemp("sampled") / "data"
    doc = generate(out, seed=0, world="random", world_params=params)
    return out, doc, params


def test_a_sampled_world_is_a_valid_dataset_with_its_own_shape(sampled):
    import polars as pl

    from core.challenge import DATASET_DIR
    from core.validate import validate_root

    out, doc, params = sampled
    assert validate_root(out, require_all=True).ok
    train = pl.read_parquet(out / DATASET_DIR / "train.parquet")
    assert train.height == 6_000 and train["label"].mean() == pytest.approx(0.5)  # one negative per click
    assert doc["scale"] == "sampled" and doc["world_config"] == params["world"]
    assert {k: doc["config"][k] for k in params["synth"]} == params["synth"]
    info = pl.read_parquet(out / DATASET_DIR / "item_info.parquet")["item_emb_d128"].to_numpy()
    assert (info[0] == 0).all()  # padding stays zeros whatever the transform
    norms = np.linalg.norm(info[1:], axis=1)
    assert norms.mean() > 20 and doc["item_emb_d128_mean_row_norm"] == pytest.approx(norms.mean(), rel=1e-5)


def test_a_sampled_worlds_oracle_is_calibrated_with_its_own_group_size(sampled):
    """Groups of 2 rows here, not 4: the posterior's group-size term must follow the world."""
    from harness.synth import resolve, simulate

    _, _, params = sampled
    cfg, wcfg = resolve("demo", "random", world_params=params)
    sim = simulate(cfg, wcfg, 0)
    for split in (sim.valid, sim.test):
        p = oracle_proba(sim.world, split, cfg.n_items)
        assert abs(p.mean() - split.label.mean()) < 0.02
        for rows in np.array_split(np.argsort(p, kind="stable"), 5):
            assert abs(p[rows].mean() - split.label[rows].mean()) < 0.05


def test_synth_cli_random_world_and_params_file(tmp_path, harness_cli):
    code, out, err = harness_cli("synth", tmp_path / "w", "--world", "random", "--world-seed", "5",
                                 "--world-params", _params_file(tmp_path, {"synth": {"n_train": 4_000}}))
    assert code == 0 and "random-5" in out and "4,000 train rows" in out
    doc = json.loads((tmp_path / "w" / "oracle" / "oracle.json").read_text())
    assert doc["world_seed"] == 5 and doc["config"]["n_train"] == 4_000
    code, _, err = harness_cli("synth", tmp_path / "x", "--world", "random",
                               "--world-params", _params_file(tmp_path, {"synth": {"zipff": 1}}))
    assert code == 2 and err.count("\n") == 1 and "params.json" in err and "synth.zipff" in err
    assert not (tmp_path / "x").exists()
    code, _, err = harness_cli("synth", tmp_path / "y", "--world-seed", "5")
    assert code == 2 and "--world random" in err and err.count("\n") == 1


def _params_file(tmp_path, params) -> str:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    return str(path)
