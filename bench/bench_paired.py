"""Is one Task 2 model's test AUC above another's beyond the test rows' own sampling noise? A paired DeLong
test per world, read from runs that `bench_task2.py` already made (nothing is trained here).

    python bench/bench_paired.py --world-set bench/worlds/heldout3.json --a round2 --b plain [--seed 0]
                                 [--workdir /tmp/mmctr_bench_runs] [--cache /tmp/mmctr_bench] [--out PATH]

A training seed's spread says how much a model's AUC moves when it is trained again; it says nothing of
how much the AUC would move on another draw of test users. With a few thousand test rows that second
noise is the larger one (heldout3-08: 7,200 rows, a single model's AUC has a standard error of 0.0034).
Both models score the same rows, so the test is paired: DeLong's variance of the difference
(`core.metrics.paired_auc_difference`), where what the two models share cancels. A world's row: the
difference a - b, its standard error and z = difference / error (|z| >= 1.96: beyond the test sample's
noise at the usual 5 %). Runs are read from `<workdir>/<world>_s<data seed>/<config>_seed<seed>/pred/`,
the labels from `<cache>/<world>_s<data seed>/oracle/ground_truth.csv`; a world missing either run is
listed as not run. JSON: bench/results/task2_paired_<set>_<a>_vs_<b>_<date>.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl

from _common import machine, table, write_results
from core.io import write_json_atomic
from core.metrics import paired_auc_difference


def compare(truth: Path, pred_a: Path, pred_b: Path) -> dict:
    """One world: the paired test of a against b on the test rows (joined on ID)."""
    y = pl.read_csv(truth)
    a = pl.read_csv(pred_a).rename({"Task2": "a"})
    b = pl.read_csv(pred_b).rename({"Task2": "b"})
    rows = y.join(a, on="ID", how="inner").join(b, on="ID", how="inner")
    if len(rows) != len(y):
        raise click.ClickException(f"{pred_a} and {pred_b} do not both score every row of {truth}")
    diff, se = paired_auc_difference(rows["label"].to_numpy(), rows["a"].to_numpy(), rows["b"].to_numpy())
    return {"test_rows": len(rows), "difference": round(diff, 5), "se": round(se, 5),
            "z": round(diff / se, 2) if se > 0 else None}


@click.command()
@click.option("--world-set", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--a", "name_a", required=True, help="Config name of the first model's runs (e.g. round2, default).")
@click.option("--b", "name_b", required=True, help="Config name of the second's (e.g. plain).")
@click.option("--seed", default=0, show_default=True, help="Training seed of both runs.")
@click.option("--data-seed", default=0, show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench_runs"), show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON path [default: bench/results/...].")
def main(world_set, name_a, name_b, seed, data_seed, workdir, cache, out):
    """Paired DeLong test of two configs' test AUC in every world of a set."""
    worlds = [w["name"] for w in json.loads(world_set.read_text())["worlds"]]
    rows = []
    for world in worlds:
        truth = cache / f"{world}_s{data_seed}" / "oracle" / "ground_truth.csv"
        preds = [workdir / f"{world}_s{data_seed}" / f"{n}_seed{seed}" / "pred" / "prediction.csv"
                 for n in (name_a, name_b)]
        if not (truth.is_file() and all(p.is_file() for p in preds)):
            rows.append({"world": world, "result": "not run"})
            continue
        rows.append({"world": world, **compare(truth, *preds)})
    done = [r for r in rows if "z" in r and r["z"] is not None]
    summary = {"worlds": len(done), "a_above": sum(r["difference"] > 0 for r in done),
               "a_above_beyond_noise": sum(r["z"] >= 1.96 for r in done),
               "a_below_beyond_noise": sum(r["z"] <= -1.96 for r in done)}
    click.echo(f"{name_a} - {name_b}, test AUC, paired DeLong (training seed {seed}):")
    click.echo(table(rows, ["world", "test_rows", "difference", "se", "z", "result"]))
    click.echo(f"{name_a} above in {summary['a_above']} of {summary['worlds']}; beyond the test sample's noise "
               f"(|z| >= 1.96): above in {summary['a_above_beyond_noise']}, below in {summary['a_below_beyond_noise']}")
    doc = {"benchmark": "bench/bench_paired.py", "world_set": str(world_set), "a": name_a, "b": name_b,
           "seed": seed, "data_seed": data_seed, "rows": rows, "summary": summary, "machine": machine(),
           "command": (f"python bench/bench_paired.py --world-set {world_set} --a {name_a} --b {name_b} "
                       f"--seed {seed}")}
    if out is None:
        path = write_results(f"task2_paired_{world_set.stem}_{name_a}_vs_{name_b}", doc)
    else:
        write_json_atomic(out, doc)
        path = out
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
