"""Cost per sample of the Task 2 models at full size, counted by torch's FlopCounterMode.

    python bench/bench_flops.py [--out bench/results/task2_flops_<date>.json]

Each model is built with the real vocabulary (91,718 item_info rows, a random frozen table: FLOPs do not
depend on the values) and counted at history lengths 6 (the median of the real and generated data), 20
and 50 (SASRecDCN's window): the forward pass, and a training step (forward with the auxiliary loss,
then backward). The previous SASRecDCN default is counted beside the current one, so a change in a
full-size epoch's cost reads straight off the table.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (6, 20, 50)
N_ITEMS = 91_718
# the SASRecDCN default before the worlds (issue 10): no sequence projection, 4 heads, FFN 512,
# 3 cross layers, MLP 512-256-128, no mean readout, products, item bias or content match
PREVIOUS_SASRECDCN = {"id_emb_dim": 64, "n_heads": 4, "ffn_dim": 512, "cross_layers": 3,
                      "mlp_dims": [512, 256, 128], "seq_dim": 0, "mean_readout": False, "product": False,
                      "item_bias": False, "bilinear_dim": 0}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path),
              default=ROOT / "bench" / "results" / f"task2_flops_{dt.date.today().isoformat()}.json",
              show_default=True)
def main(out: Path) -> None:
    """Print and write the FLOPs per sample of each Task 2 model."""
    import torch

    from core.io import write_json_atomic
    from flops import count_parameters, flops_per_sample
    from task2.registry import build_model

    torch.manual_seed(0)
    table = torch.randn(N_ITEMS, 128)
    tags = torch.randint(0, 50, (N_ITEMS, 5))
    models = {
        "SASRecDCN (default)": {"model_class": "SASRecDCN", "config": {"n_items": N_ITEMS}},
        "SASRecDCN (previous default)": {"model_class": "SASRecDCN",
                                         "config": {"n_items": N_ITEMS, **PREVIOUS_SASRECDCN}},
        "MeanPoolMLP": {"model_class": "MeanPoolMLP", "config": {"n_items": N_ITEMS}},
        "DIN": {"model_class": "DIN", "config": {"n_items": N_ITEMS, "n_tags": 50}},
    }
    rows = []
    for name, args in models.items():
        model = build_model(args, table, tags)
        params = count_parameters(model)
        for length in LENGTHS:
            f = flops_per_sample(model, length)
            rows.append({"model": name, "args": args, "history_length": f["history_length"],
                         "forward_mflops": round(f["forward_flops"] / 1e6, 3),
                         "train_mflops": round(f["train_flops"] / 1e6, 3), **params})
    print(f"{'model':<30}{'history':>8}{'forward MFLOP':>15}{'train MFLOP':>13}{'trainable':>12}")
    for r in rows:
        print(f"{r['model']:<30}{r['history_length']:>8}{r['forward_mflops']:>15.2f}{r['train_mflops']:>13.2f}"
              f"{r['trainable']:>12,}")
    doc = {"benchmark": "task2_flops", "command": " ".join(["bench/bench_flops.py", *sys.argv[1:]]),
           "counter": "torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per multiply-add, per sample",
           "machine": machine(), "rows": rows}
    write_json_atomic(out, doc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
