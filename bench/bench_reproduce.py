"""The main job end to end, as a user meets it: a fresh clone, its set-up, then `./reproduce.sh`.

    python bench/bench_reproduce.py [--tag NAME] [--workdir /tmp/mmctr-repro] [--no-clone] [-- REPRODUCE_ARGS...]

Clones the committed HEAD of this repository into WORKDIR/clone (uncommitted changes are not measured;
`--no-clone` runs this checkout instead and says so), times `scripts/setup_env.sh` (a fresh virtual
environment from requirements.lock) and then `./reproduce.sh REPRODUCE_ARGS` (default: none, the demo
dataset, Track 3). Prints the results table and writes bench/results/reproduce_<tag>_<date>.json with the
set-up and pipeline seconds, each stage's seconds, the AUCs next to the oracle and popularity, the load
average before and after (the machine may be shared), the machine and the commit.

Target (issue 6): from the end of installation to the table in under 10 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from _common import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 600


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    return code, round(time.perf_counter() - t0, 1)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tag", default="demo", show_default=True, help="Names the JSON: bench/results/reproduce_<tag>_<date>.json.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path("/tmp/mmctr-repro"),
              show_default=True, help="Holds the clone, the run folder and the logs.")
@click.option("--no-clone", is_flag=True, help="Run this checkout (its .venv) instead of a clone.")
@click.argument("reproduce_args", nargs=-1, type=click.UNPROCESSED)
def main(tag: str, workdir: Path, no_clone: bool, reproduce_args: tuple[str, ...]) -> None:
    """A fresh clone, its set-up, then `./reproduce.sh REPRODUCE_ARGS`, timed (pass them after `--`)."""
    work = workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()
    if no_clone:
        repo, setup = ROOT, {"skipped": "--no-clone: the existing .venv was used"}
    else:
        repo = work / "clone"
        if repo.exists():
            shutil.rmtree(repo)
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        code, secs = timed(["bash", "-c", "source scripts/setup_env.sh"], repo, work / "setup.log")
        if code:
            sys.exit(f"error: set-up failed (exit {code}); see {work / 'setup.log'}")
        setup = {"seconds": secs, "log": str(work / "setup.log")}
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    code, secs = timed(["bash", "./reproduce.sh", "--out", str(run_dir), *reproduce_args], repo,
                       work / "reproduce.log")
    if code:
        sys.exit(f"error: ./reproduce.sh failed (exit {code}); see {work / 'reproduce.log'}")
    result = json.loads((run_dir / "results.json").read_text())
    doc = {
        "benchmark": "reproduce",
        "command": "python bench/bench_reproduce.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "fresh_clone": not no_clone,
        "reproduce_args": list(reproduce_args),
        "setup": setup,
        "reproduce_seconds": secs,
        "target_seconds": TARGET_S,
        "meets_target": secs < TARGET_S,
        "stages_s": result["timings_s"],
        "auc": result["auc"],
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": machine(),
    }
    print(f"run folder: {run_dir} (results.json, auc_vs_oracle.png, task2/training_curves.png)")
    print(f"set-up: {setup.get('seconds', 'skipped')} s   reproduce.sh: {secs} s (target < {TARGET_S} s)")
    for name, a in result["auc"].items():
        print(f"{name:<18} valid {a['valid'] if a['valid'] is None else round(a['valid'], 4)}   "
              f"test {a['test'] if a['test'] is None else round(a['test'], 4)}")
    print("stages:", ", ".join(f"{k} {v} s" for k, v in result["timings_s"].items()))
    print(f"wrote {write_results(f'reproduce_{tag}', doc)}")


if __name__ == "__main__":
    main()
