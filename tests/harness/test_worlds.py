"""The generator's worlds: each in its stated regime, each with an oracle that is the true posterior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import UserError
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
    with pytest.raises(UserError, match="unknown world 'nope'; choose one of item, history, mean, recent"):
        resolve("tiny", "nope")
