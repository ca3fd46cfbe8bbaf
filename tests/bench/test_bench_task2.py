"""bench/bench_task2.py: merging runs made in parallel, and which tree's code a run trains."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
_spec = importlib.util.spec_from_file_location("bench_task2_module", BENCH / "bench_task2.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

RESULTS = BENCH / "results" / "task2_heldout3_2026-12-06.json"  # a committed file: 8 worlds, 4 configs


def _part(doc: dict, keep, command: str) -> dict:
    rows = [r for r in doc["rows"] if keep(r)]
    worlds = {w: doc["worlds"][w] for w in {r["world"] for r in rows}}
    return dict(doc, rows=rows, worlds=worlds, commands=[command])


def test_merge_keeps_every_run_once_and_a_self_merge_adds_no_command(tmp_path, monkeypatch):
    doc = json.loads(RESULTS.read_text())
    a = _part(doc, lambda r: r["config"] == "default", "A")
    b = _part(doc, lambda r: r["config"] != "default", "B")
    b["rows"].append(dict(a["rows"][0], test_auc=0.5))  # the same run in two parts: the last file given wins
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p, d in zip(paths, (a, b)):
        p.write_text(json.dumps(d))
    out = tmp_path / "all.json"
    monkeypatch.setattr(sys, "argv", ["bench_task2.py", "--merge"])
    bench.merge(out, tuple(paths))
    merged = json.loads(out.read_text())
    assert sorted(map(bench.row_key, merged["rows"])) == sorted(map(bench.row_key, doc["rows"]))
    assert set(merged["worlds"]) == set(doc["worlds"])
    first = {bench.row_key(r): r for r in merged["rows"]}[bench.row_key(a["rows"][0])]
    assert first["test_auc"] == 0.5 != a["rows"][0]["test_auc"]
    assert merged["set_summary"]["default"]["worlds"] == doc["set_summary"]["default"]["worlds"]
    record = merged["set_summary"]["default"]["against_plain"]  # the sweep's names for the two models
    lost = {"heldout3-08", a["rows"][0]["world"]}  # round 3's one loss, and the run set to 0.5 above
    assert set(record["loss"]) == lost and len(record["win"]) + len(record["tie"]) == 8 - len(lost)
    commands = merged["commands"]
    bench.merge(out, (out,))  # the round files were grown this way: merged into themselves
    again = json.loads(out.read_text())
    assert again["commands"] == commands and len(set(commands)) == len(commands)
    assert again["rows"] == merged["rows"] and again["scale"] == doc["scale"] == "set heldout3"
    other = tmp_path / "other.json"  # a part from another world set: the label names both sets
    other.write_text(json.dumps(dict(a, scale="set tuning_history", commands=["C"])))
    bench.merge(out, (other,))
    assert json.loads(out.read_text())["scale"] == "set heldout3 + set tuning_history"
    bench.merge(out, (other,))  # a set already named is not named again
    assert json.loads(out.read_text())["scale"] == "set heldout3 + set tuning_history"


@pytest.mark.parametrize("script", ["bench_task2.py", "_common.py"])
def test_a_copy_of_the_tree_trains_its_own_code_not_the_installed_checkouts(tmp_path, script):
    """A frozen checkout (git worktree) that shares this checkout's .venv, whose editable install points here,
    must import its own core/ and task2/: the children bench_task2 spawns run the copy's bench_task2.py, and
    every bench script that imports the copy's _common gets the copy's packages."""
    import subprocess

    (tmp_path / "bench").mkdir()
    for name in ("bench_task2.py", "_common.py"):
        (tmp_path / "bench" / name).write_text((BENCH / name).read_text())
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    probe = ("import runpy, sys; sys.path.insert(0, sys.argv[1] + '/bench'); "
             "runpy.run_path(sys.argv[1] + '/bench/' + sys.argv[2], run_name='probe'); "
             "import core; print(core.__file__)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path), script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(tmp_path / "core" / "__init__.py")
