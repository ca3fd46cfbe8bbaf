"""Helpers for benchmarks: machine description, timed child processes with peak memory, JSON results."""

from __future__ import annotations

import datetime as _dt
import os
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# This tree's own core/, task1/, task2/ and harness/, not the ones an editable install points at: a bench run
# from a frozen checkout (git worktree) sharing another checkout's .venv would otherwise measure that
# checkout's code. Every bench script that imports this module before those packages gets it.
sys.path.insert(0, str(RESULTS.parents[1]))


def machine() -> dict:
    """The machine a result was measured on: core.env.fingerprint() (python, platform, machine, packages,
    torch/CUDA/cuDNN/GPU/threads, git commit) plus what a timing also depends on: CPUs, memory, the date.

    The flat keys earlier results carry stay: `versions` (fingerprint's `packages`) and `gpu`."""
    from core.env import fingerprint

    fp = fingerprint()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {**{k: v for k, v in fp.items() if k != "packages"}, "versions": fp["packages"],
            "gpu": fp["torch"]["gpu"], "cpus": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def timed_child(args: list[str], env: dict | None = None) -> dict:
    """Run a command in a fresh process; wall seconds and its peak resident memory (GiB)."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the command so ru_maxrss is its own
        if env:
            os.environ.update(env)
        os.execvp(args[0], args)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    return {"cmd": " ".join(args), "exit_code": code, "wall_s": round(wall, 2),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def write_results(name: str, doc: dict) -> Path:
    """bench/results/<name>_<date>.json (the date of the run, unless `name` already ends with one): a later
    run of the same benchmark sits beside the earlier one instead of over it."""
    import re

    from core.io import write_json_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    if not re.search(r"_\d{4}-\d{2}-\d{2}$", name):
        name = f"{name}_{_dt.date.today().isoformat()}"
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, doc)
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(out)


del resource  # imported to fail early on platforms without wait4/rusage
