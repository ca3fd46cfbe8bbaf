"""FuxiCTR's DIN against the harness's over several training seeds: is the gap inside the seed-to-seed spread?

    python bench/din_seed_spread.py --fuxictr FX_SEED_A.json --fuxictr FX_SEED_B.json ... \
        --ours OURS.json [--ours MORE.json] [--world item] [--out PATH]

--fuxictr: result JSONs of bench_fuxictr_din.py (one training seed each, same data and config).
--ours: bench_task2.py JSONs; every DIN row of --world counts, one per seed (a seed twice is an error).

Per system: the mean, the sample standard deviation and the range of valid and test AUC over its seeds.
The gap (harness mean - FuxiCTR mean) is "within the seed spread" when its size is at most the larger of
the two standard deviations. Welch's t statistic is printed beside it (with 3-4 seeds a side it is a
rough guide, not a test). Runs stopped by a time cap before their plateau are marked. Nothing is
trained here. JSON goes to bench/results/din_seed_spread_<date>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fuxictr_run(path: Path) -> dict:
    doc = json.loads(path.read_text())
    fx = doc["fuxictr_din"]
    return {"system": "fuxictr", "seed": doc["config"]["fuxictr"]["seed"], "valid_auc": fx["valid_auc"],
            "test_auc": fx["test_auc"], "best_epoch": fx["best_epoch"], "epochs_run": fx["epochs_run"],
            "stopped_by_time_cap": fx["stopped_by_time_cap"], "batch_size": doc["config"]["fuxictr"]["batch_size"],
            "learning_rate": doc["config"]["fuxictr"]["learning_rate"], "data": doc["data"]["path"],
            "file": _rel(path)}


def ours_runs(path: Path, world: str) -> list[dict]:
    doc = json.loads(path.read_text())
    rows = [r for r in doc["rows"] if r.get("model_class") == "DIN" and r.get("world") == world]
    return [{"system": "harness", "seed": r["seed"], "valid_auc": r["valid_auc"], "test_auc": r["test_auc"],
             "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"], "stopped_by_time_cap": False,
             "stop_reason": r.get("stop_reason"), "batch_size": r["train_config"]["batch_size"],
             "learning_rate": r["train_config"]["learning_rate"], "file": _rel(path)} for r in rows]


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def compare(fx: dict, ours: dict) -> dict:
    gap = ours["mean"] - fx["mean"]
    spread = max(s for s in (fx["std"], ours["std"]) if s is not None)
    se = math.sqrt((fx["std"] or 0) ** 2 / fx["n"] + (ours["std"] or 0) ** 2 / ours["n"])
    return {"gap": gap, "spread": spread, "within_spread": abs(gap) <= spread,
            "welch_t": gap / se if se > 0 else None,
            "ranges_overlap": fx["min"] <= ours["max"] and ours["min"] <= fx["max"]}


def main(fuxictr: tuple[Path, ...], ours: tuple[Path, ...], world: str, out: Path | None) -> None:
    from _common import machine, table

    runs = [fuxictr_run(p) for p in fuxictr] + [r for p in ours for r in ours_runs(p, world)]
    for system in ("fuxictr", "harness"):
        seeds = [r["seed"] for r in runs if r["system"] == system]
        if len(seeds) < 2:
            raise SystemExit(f"{system}: {len(seeds)} run(s); a spread needs at least 2 seeds")
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"{system}: seed(s) counted twice: {sorted(seeds)}")
    setups = {(r["batch_size"], round(r["learning_rate"], 9)) for r in runs}
    if len(setups) != 1:
        raise SystemExit(f"the runs differ in batch size / learning rate: {sorted(setups)}")
    stats = {system: {metric: summary([r[metric] for r in runs if r["system"] == system])
                      for metric in ("valid_auc", "test_auc")} for system in ("fuxictr", "harness")}
    verdict = {metric: compare(stats["fuxictr"][metric], stats["harness"][metric]) for metric in ("valid_auc", "test_auc")}

    print(table([{"system": r["system"], "seed": r["seed"], "valid AUC": f"{r['valid_auc']:.4f}",
                  "test AUC": f"{r['test_auc']:.4f}", "best/run": f"{r['best_epoch']}/{r['epochs_run']}",
                  "note": "stopped by time cap" if r["stopped_by_time_cap"] else ""} for r in runs],
                ["system", "seed", "valid AUC", "test AUC", "best/run", "note"]))
    print()
    print(table([{"metric": m, **{f"{s} mean+-std": f"{stats[s][m]['mean']:.4f} +- {stats[s][m]['std']:.4f}"
                                  for s in ("fuxictr", "harness")},
                  "gap": f"{v['gap']:+.4f}", "spread": f"{v['spread']:.4f}",
                  "within": "yes" if v["within_spread"] else "no", "Welch t": f"{v['welch_t']:.2f}",
                  "ranges overlap": "yes" if v["ranges_overlap"] else "no"} for m, v in verdict.items()],
                ["metric", "fuxictr mean+-std", "harness mean+-std", "gap", "spread", "within", "Welch t",
                 "ranges overlap"]))
    doc = {"benchmark": "din_seed_spread", "command": "din_seed_spread.py " + " ".join(sys.argv[1:]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "world": world,
           "runs": runs, "stats": stats, "verdict": verdict, "machine": machine()}
    out = out or ROOT / "bench" / "results" / f"din_seed_spread_{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


def cli():
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__.split("\n\n")[0])
    @click.option("--fuxictr", multiple=True, required=True,
                  type=click.Path(path_type=Path, dir_okay=False, exists=True),
                  help="A bench_fuxictr_din.py result JSON (repeat, one per seed).")
    @click.option("--ours", multiple=True, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
                  help="A bench_task2.py JSON with DIN rows (repeat).")
    @click.option("--world", default="item", show_default=True, help="The world the DIN rows must come from.")
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                  help="JSON path [default: bench/results/din_seed_spread_<date>.json].")
    def command(**options):
        main(**options)

    return command


if __name__ == "__main__":
    cli()()
