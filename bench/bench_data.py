"""Time `harness synth` and `harness validate` at demo and full scale; wall time and peak memory.

    python bench/bench_data.py [--scales demo --scales full] [--workdir /tmp/mmctr-bench]

Targets on 2 cores: synth --scale full under 10 minutes and 8 GB; validate of the full dataset under
60 s and 6 GB. Writes bench/results/data_2026-11-25.json.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from _common import machine, table, timed_child, write_results

TARGETS = {("synth", "full"): (600, 8.0), ("validate", "full"): (60, 6.0)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--scales", multiple=True, default=("demo", "full"), show_default=True,
              help="Scale to generate and validate; repeat the option for several.")
@click.option("--workdir", "work", type=click.Path(path_type=Path, file_okay=False),
              default=Path("/tmp/mmctr-bench"), show_default=True, help="Where the datasets are generated.")
def main(scales: tuple[str, ...], work: Path) -> None:
    """Time `harness synth` and `harness validate` per scale: wall time and peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in scales:
        out = work / scale
        if out.exists():
            shutil.rmtree(out)
        for step, cmd in (("synth", [sys.executable, "-m", "harness", "synth", str(out), "--scale", scale]),
                          ("validate", [sys.executable, "-m", "harness", "validate", str(out)])):
            r = timed_child(cmd)
            target = TARGETS.get((step, scale))
            r.update(step=step, scale=scale,
                     target=f"<{target[0]}s, <{target[1]}GB" if target else "",
                     meets=("yes" if r["wall_s"] < target[0] and r["peak_rss_gib"] < target[1] else "NO")
                     if target else "")
            rows.append(r)
            print(table([r], ["step", "scale", "wall_s", "peak_rss_gib", "exit_code", "target", "meets"]),
                  flush=True)
    print()
    print(table(rows, ["step", "scale", "wall_s", "peak_rss_gib", "exit_code", "target", "meets"]))
    path = write_results("data", {"machine": machine(), "results": rows,
                                  "command": "python bench/bench_data.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
