"""What the preflight and a re-run of a finished run cost on full-size data (issue 11).

    python bench/bench_preflight.py --data FULL_DATA [--repeat 3] [--rerun "REPRODUCE.SH OPTIONS"] [--out NAME]

1. `harness preflight` on FULL_DATA (e.g. `harness synth DIR --scale full`), in fresh processes, --repeat
   times for Track 3 (offline encoders: every check runs, the covers are listed, and with the official row
   counts the published sha256 are compared) and once for Track 2: wall seconds, CPU seconds, the
   report's own seconds, exit code, warnings. A standalone preflight keeps no hash cache, so each run
   hashes train.parquet and item_feature.parquet again: this is the cost of a first run.
2. The stage stamps of a Track 3 run on FULL_DATA, in this process: every stage's input digests with an
   empty hash cache (what the first run pays once, beside its stages) and again with the cache it filled
   (what a re-run pays); the old way, sha256 of every input byte, for comparison.
3. With --rerun: `./reproduce.sh OPTIONS` again on a run that finished with these options; wall seconds,
   and each stage's status from results.json (all must be skipped).

The machine's load average is recorded next to each figure: the 2 cores of this machine are shared.
Writes bench/results/<out>.json (default preflight_full_2026-12-03.json).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from _common import machine, write_results

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(cpu, 2), "exit_code": proc.returncode,
            "load_avg_1m": round(os.getloadavg()[0], 2), "stdout": proc.stdout, "stderr": proc.stderr}


def preflight_runs(data: Path, out: Path, env: dict, repeat: int) -> list:
    runs = []
    for track, n in (("3", repeat), ("2", 1)):
        for _ in range(n):
            cmd = [sys.executable, "-m", "harness", "preflight", "--data", str(data), "--out", str(out),
                   "--track", track, "--profile", "offline", "--device", "cpu", "--json"]
            r = timed(cmd, env)
            doc = json.loads(r.pop("stdout")) if r["exit_code"] in (0, 1, 2) and r["stdout"].strip() else {}
            r.pop("stderr")
            r.update({"track": track, "report_seconds": doc.get("seconds"), "ok": doc.get("ok"),
                      "warnings": [c["message"][:120] for c in doc.get("checks", []) if c["status"] == "warning"],
                      "known_data": {k: v.get("match") for k, v in
                                     (doc.get("facts", {}).get("known_data") or {}).get("files", {}).items()},
                      "covers_listed": (doc.get("facts", {}).get("covers") or {}).get("found")})
            runs.append(r)
            click.echo(f"preflight track {track}: {r['wall_s']} s wall, {r['cpu_s']} s CPU, exit {r['exit_code']}",
                       err=True)
    return runs


def stamp_pass(data: Path, run_dir: Path) -> dict:
    """Every stage's stamp for a Track 3 run on `data`: cold cache, warm cache, and every byte hashed."""
    from core.io import sha256_file
    from harness.pipeline import Runner, build_stages, resolve_options
    from harness.stamps import HashCache

    opts = resolve_options(run_dir=run_dir, data=data, scale="full", world="item", seed=0, device="cpu", track="3",
                           hardware="cpu", profile="offline", image_model=None, text_model=None,
                           image_model_license=None, text_model_license=None, reducer=None, epochs=None,
                           strict=False, force=False)
    stages, _ = build_stages(opts)  # writes RUN_DIR/configs/*.json only
    out = {"stages": [s.name for s in stages]}
    cache_file = run_dir / "stamps" / "hashes.json"
    cache_file.unlink(missing_ok=True)
    for label in ("cold_cache", "warm_cache"):
        runner = Runner(run_dir, hashes=HashCache(cache_file))
        t0 = time.perf_counter()
        stamps = [runner.stamp_of(s) for s in stages]
        runner.hashes.save()
        out[label] = {"seconds": round(time.perf_counter() - t0, 2), "bytes_hashed": runner.hashes.hashed_bytes,
                      "cache_hits": runner.hashes.hits, "load_avg_1m": round(os.getloadavg()[0], 2)}
        click.echo(f"stamps, {label}: {out[label]}", err=True)
    out["same_stamps"] = stamps == [Runner(run_dir, hashes=HashCache(cache_file)).stamp_of(s) for s in stages]
    # the old way: every input byte of every stage, every time (files under a folder included)
    t0 = time.perf_counter()
    total = 0
    for s in stages:
        for p in s.inputs:
            files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
            for f in files:  # (no stage reads the data root itself, so oracle/ is never among them)
                sha256_file(f)
                total += f.stat().st_size
    out["every_byte"] = {"seconds": round(time.perf_counter() - t0, 2), "bytes_hashed": total,
                         "load_avg_1m": round(os.getloadavg()[0], 2)}
    click.echo(f"stamps, every byte: {out['every_byte']}", err=True)
    return out


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A full-size dataset (harness synth DIR --scale full).")
@click.option("--repeat", type=int, default=3, show_default=True)
@click.option("--rerun", default=None, help="./reproduce.sh options of a run that finished: it is timed again.")
@click.option("--scratch", type=click.Path(path_type=Path), default=Path("/tmp/bench_preflight_run"),
              show_default=True, help="Run folder for the preflight and the stamp pass (not a real run).")
@click.option("--out", "out_name", default="preflight_full", show_default=True)
def main(data, repeat, rerun, scratch, out_name):
    """Time the preflight, the stage stamps and a re-run on full-size data."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONHASHSEED="0")
    data = data.resolve()
    doc = {"benchmark": "preflight and re-run on full-size data", "command": " ".join(sys.argv),
           "machine": machine(), "data": str(data),
           "data_bytes": sum(f.stat().st_size for f in data.rglob("*") if f.is_file())}
    doc["preflight"] = preflight_runs(data, scratch, env, repeat)
    doc["stamps_track3"] = stamp_pass(data, scratch)
    if rerun:
        cmd = ["bash", str(ROOT / "reproduce.sh"), *shlex.split(rerun)]
        r = timed(cmd, env)
        run_dir = Path(shlex.split(rerun)[shlex.split(rerun).index("--out") + 1]).resolve()
        result = json.loads((run_dir / "results.json").read_text())
        r.pop("stdout")
        r["stderr_tail"] = r.pop("stderr").strip().splitlines()[-12:]
        r.update({"status": result["status"], "timings_s": result["timings_s"],
                  "all_stages_skipped": all(v.startswith("skipped") for k, v in result["status"].items()
                                            if k != "preflight")})
        doc["rerun"] = {"options": rerun, **r}
        click.echo(f"re-run: {r['wall_s']} s wall, all skipped: {r['all_stages_skipped']}", err=True)
    path = write_results(out_name, doc)
    summary = {"result": str(path), "preflight_wall_s": [r["wall_s"] for r in doc["preflight"]],
               "stamps_warm_s": doc["stamps_track3"]["warm_cache"]["seconds"]}
    if rerun:
        summary["rerun_wall_s"] = doc["rerun"]["wall_s"]
    click.echo(json.dumps(summary))


if __name__ == "__main__":
    main()
