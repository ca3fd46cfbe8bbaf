"""bench/bench_paired.py: the paired DeLong test read from runs that bench_task2.py left on disk."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner

from core.metrics import paired_auc_difference

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
_spec = importlib.util.spec_from_file_location("bench_paired_module", BENCH / "bench_paired.py")
paired = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired)


def _layout(tmp_path: Path, rng, n: int = 400):
    """Two worlds; w1 has runs 'good' and 'weak' and its labels, w2 only 'good' (so it is 'not run')."""
    y = (rng.random(n) < 0.25).astype(int)
    scores = {"good": y + rng.normal(size=n), "weak": 0.3 * y + rng.normal(size=n)}
    cache, work = tmp_path / "cache", tmp_path / "runs"
    (cache / "w1_s0" / "oracle").mkdir(parents=True)
    pl.DataFrame({"ID": np.arange(n), "label": y}).write_csv(cache / "w1_s0" / "oracle" / "ground_truth.csv")
    for world, names in (("w1", scores), ("w2", ["good"])):
        for name in names:
            d = work / f"{world}_s0" / f"{name}_seed0" / "pred"
            d.mkdir(parents=True)
            order = rng.permutation(n)  # rows in any order: joined on ID
            pl.DataFrame({"ID": order, "Task2": scores[name][order]}).write_csv(d / "prediction.csv")
    sets = tmp_path / "set.json"
    sets.write_text(json.dumps({"worlds": [{"name": "w1"}, {"name": "w2"}]}))
    return sets, cache, work, y, scores


def test_bench_paired_reports_the_difference_its_error_and_the_worlds_not_run(tmp_path):
    sets, cache, work, y, scores = _layout(tmp_path, np.random.default_rng(0))
    out = tmp_path / "out.json"
    res = CliRunner().invoke(paired.main, ["--world-set", str(sets), "--a", "good", "--b", "weak", "--cache",
                                           str(cache), "--workdir", str(work), "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    w1, w2 = doc["rows"]
    diff, se = paired_auc_difference(y, scores["good"], scores["weak"])
    assert w1["difference"] == round(diff, 5) and w1["se"] == round(se, 5) and w1["z"] > 1.96
    assert w2 == {"world": "w2", "result": "not run"}
    assert doc["summary"] == {"worlds": 1, "a_above": 1, "a_above_beyond_noise": 1, "a_below_beyond_noise": 0}


def test_bench_paired_refuses_predictions_that_miss_rows_in_one_line(tmp_path):
    sets, cache, work, _, _ = _layout(tmp_path, np.random.default_rng(1))
    pred = work / "w1_s0" / "weak_seed0" / "pred" / "prediction.csv"
    pl.read_csv(pred).head(10).write_csv(pred)
    res = CliRunner().invoke(paired.main, ["--world-set", str(sets), "--a", "good", "--b", "weak", "--cache",
                                           str(cache), "--workdir", str(work), "--out", str(tmp_path / "o.json")])
    assert res.exit_code == 1 and "do not both score every row" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "o.json").exists()
