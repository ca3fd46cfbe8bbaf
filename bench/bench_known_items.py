"""Peak memory of SASRecDCN.set_known_items at the official training size (issue 11).

    python bench/bench_known_items.py [--rows 3600000] [--device cpu|cuda] [--out NAME]

Each measurement runs in a fresh child process that builds full-size int32 split tensors (3.6 M rows,
64-slot histories, ids in 1..91,717: what task2.data.read_split gives train.py) and then marks the known
items, twice over:

- `model`: the repository's `SASRecDCN.set_known_items(item_id, item_seq)`, as train.py calls it;
- `unchunked`: the same mask built with one indexing call per tensor (`known[t.reshape(-1)] = True`),
  the implementation before the fix, kept as the reference that shows the int64 copy.

Peak memory: on the CPU the growth of the child's peak resident set (ru_maxrss) across the call; on CUDA
torch.cuda.max_memory_allocated across the call. Both children also check that the masks agree.
Writes bench/results/<out>.json (default known_items_full_<device>_<date>.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from _common import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 91_718  # item_info rows: padding 0 and items 1..91,717
SEQ_LEN = 64


def child(mode: str, rows: int, device: str) -> dict:
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, N_ITEMS, (rows, SEQ_LEN), dtype=torch.int32, generator=g).to(dev)
    iid = torch.randint(1, N_ITEMS, (rows,), dtype=torch.int32, generator=g).to(dev)
    from task2.model import SASRecDCN, SASRecDCNConfig

    model = SASRecDCN(SASRecDCNConfig(n_items=N_ITEMS)).to(dev)

    def peak_mib() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(dev) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = peak_mib()
    t0 = time.perf_counter()
    if mode == "model":
        model.set_known_items(iid, seq)
        known = model.id_known.clone()
    else:
        known = torch.zeros(N_ITEMS, dtype=torch.bool, device=dev)
        for t in (iid, seq):
            known[t.reshape(-1)] = True
        known[0] = True
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    after = peak_mib()
    ids = torch.cat([iid.reshape(-1).long().cpu(), seq.reshape(-1)[:5_000_000].long().cpu()])
    return {"mode": mode, "rows": rows, "ids": rows * (SEQ_LEN + 1), "device": device,
            "peak_before_mib": round(before, 1), "peak_after_mib": round(after, 1),
            "peak_growth_mib": round(after - before, 1), "seconds": round(seconds, 3),
            "known_items": int(known.sum()), "spot_check_ok": bool(known.cpu()[ids].all())}


@click.command()
@click.option("--rows", type=int, default=3_600_000, show_default=True, help="Training rows (official: 3.6 M).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", "out_name", default=None, help="Result name under bench/results/ (no .json).")
@click.option("--child", "child_mode", type=click.Choice(["model", "unchunked"]), default=None, hidden=True)
def main(rows, device, out_name, child_mode):
    """Measure set_known_items' peak memory at full size, against the unchunked reference."""
    if child_mode:
        print(json.dumps(child(child_mode, rows, device)))
        return
    runs = {}
    for mode in ("model", "unchunked"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--rows", str(rows), "--device", device],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"child {mode} failed: {proc.stderr[-2000:]}")
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = runs[mode]
        print(f"{mode:<10} peak +{r['peak_growth_mib']:8.1f} MiB  {r['seconds']:6.2f} s", file=sys.stderr)
    agree = runs["model"]["known_items"] == runs["unchunked"]["known_items"]
    doc = {"benchmark": "set_known_items peak memory at full size", "command": " ".join(sys.argv),
           "machine": machine(), "runs": runs, "masks_agree": agree,
           "int64_copy_mib": round(rows * (SEQ_LEN + 1) * 8 / 2**20, 1)}
    path = write_results(out_name or f"known_items_full_{device}", doc)
    print(json.dumps({"result": str(path), "model_peak_growth_mib": runs["model"]["peak_growth_mib"],
                      "unchunked_peak_growth_mib": runs["unchunked"]["peak_growth_mib"], "masks_agree": agree}))


if __name__ == "__main__":
    main()
