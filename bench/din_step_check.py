"""Same weights, same batches: does the harness's DIN take the same training steps as FuxiCTR 2.3.7's DIN?

    python bench/din_step_check.py [--data DATA_DIR] [--steps 10] [--batch-size 256] [--lr 1.76777e-4]
        [--venv /work/fuxictr-venv] [--out PATH]

An AUC comparison of two trainings can only say "equal within the seed-to-seed spread"; this says where
the two implementations differ, if they do. Both models start from the same weights (ours, copied into
FuxiCTR's by position) and take `--steps` Adam steps on the same rows of the train split, dropout off
(its masks are the one random draw the two cannot share). FuxiCTR's step is its own
`BaseModel.train_step` (forward, BCE + `regularization_loss`, clip_grad_norm 10, Adam); ours is
`task2.train.train_step` with `task2.train.make_optimizer`, as `harness train` runs them.

Compared: the loss of every step (BCE + regulariser, as FuxiCTR returns it) and, after the last step, the
predicted probabilities on 2,048 valid rows and every parameter. The yardstick is float rounding: our
model run twice, once with the packed attention `harness train` uses and once with the padded form
(FuxiCTR's literal computation), differs only in summation order, and Adam turns such differences into
growing ones step by step. Two regulariser settings run: the official one (embedding 1e-6, net 0) and a
strong one (embedding 1e-2, net 1e-3), where an L2 term on the wrong parameters shows at once.

The check fails (exit 1) when the first step's loss (before any update: forward and regulariser) differs
by more than 1e-6, or a final probability by more than 1e-4 and more than 3x what rounding alone moves
it. FuxiCTR runs in a child process in its own
venv (as in bench_fuxictr_din.py); arrays pass between the two as .npz (no pickles). JSON goes to
bench/results/din_step_check_<date>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from bench_fuxictr_din import (BASELINE, _Batches, _din_class, build_feature_map, data_venv_options, ensure_data,
                               ensure_venv, item_tensors)

ROOT = Path(__file__).resolve().parents[1]
CASES = {"official_l2": {"embedding_regularizer": 1e-6, "net_regularizer": 0.0},
         "strong_l2": {"embedding_regularizer": 1e-2, "net_regularizer": 1e-3}}
LOSS0_TOL, PROB_TOL, FLOOR_FACTOR = 1e-6, 1e-4, 3.0
N_EVAL = 2048
# Our DIN's feature embeddings -> FuxiCTR's FeatureEmbeddingDict entries (the rest maps by position).
EMBEDDINGS = {"items.id_emb.weight": "item_id", "tag_emb.weight": "item_tags", "emb_proj.weight": "item_emb_d128",
              "likes.weight": "likes_level", "views.weight": "views_level"}


def ours_keys(state: dict) -> list[str]:
    """The entries of our DIN's state that FuxiCTR's model holds too (not the frozen item table or tags)."""
    return [k for k in state if k in EMBEDDINGS or k.startswith(("attention.", "dnn.", "head."))]


def key_map(fx_keys: list[str], ours: list[str]) -> dict:
    """Our state key -> FuxiCTR's. Embeddings by feature name; attention and DNN (+ our head) by position."""
    mapping = {}
    for k, feature in EMBEDDINGS.items():
        # an id/tag table is in embedding_layers; item_emb_d128's Linear is in feature_encoders
        hits = [f for f in fx_keys if f.startswith("embedding_layer.") and f.endswith(f".{feature}.weight")]
        if len(hits) != 1:
            raise SystemExit(f"FuxiCTR's model has {len(hits)} embeddings for {feature}")
        mapping[k] = hits[0]
    for ours_prefix, fx_prefix in ((("attention.",), "attention."), (("dnn.", "head."), "dnn.")):
        a = [k for k in ours if k.startswith(ours_prefix)]
        b = [k for k in fx_keys if k.startswith(fx_prefix)]
        if len(a) != len(b):
            raise SystemExit(f"{ours_prefix}: ours has {len(a)} entries, FuxiCTR's {len(b)}")
        mapping.update(zip(a, b))
    unmapped = set(fx_keys) - set(mapping.values())
    if unmapped:
        raise SystemExit(f"FuxiCTR's entries with no counterpart in ours: {sorted(unmapped)}")
    return mapping


# ---------------------------------------------------------------------------------------------
# Child: FuxiCTR's steps, in the fuxictr venv.
# ---------------------------------------------------------------------------------------------

def child(spec: dict) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    work = Path(spec["workdir"])
    ml = Path(spec["data"]) / "MicroLens_1M_x1"
    item_table = item_tensors(ml)
    t = {k: torch.from_numpy(v) for k, v in np.load(work / "batches.npz").items()}

    def rows(prefix: str) -> _Batches:  # the baseline loader's batches, built from the rows the parent drew
        cols = {c: t[f"{prefix}_{c}"].flatten(0, -2 if c == "item_seq" else -1)
                for c in ("item_seq", "item_id", "likes_level", "views_level", "label")}
        return _Batches({c: cols[c] for c in ("likes_level", "views_level", "label")}, cols["item_seq"],
                        cols["item_id"], item_table, spec["batch_size"], BASELINE["max_len"])

    train, valid = rows("train"), rows("eval")
    b = spec["batch_size"]

    results = {}
    for case, regs in spec["cases"].items():
        params = {**BASELINE, **regs, "learning_rate": spec["lr"], "batch_size": spec["batch_size"],
                  "net_dropout": 0.0, "attention_dropout": 0.0, "verbose": 0}
        fmap = build_feature_map(params, ml, work / case, int(item_table["item_id"].shape[0]),
                                 int(item_table["item_tags"].max()) + 1)
        model = _din_class()(fmap, **params)
        init = dict(np.load(work / case / "ours_init.npz"))
        mapping = key_map(list(model.state_dict()), list(init))
        state = model.state_dict()
        for k, fx_k in mapping.items():
            if tuple(state[fx_k].shape) != init[k].shape:
                raise SystemExit(f"{k} -> {fx_k}: shapes {init[k].shape} and {tuple(state[fx_k].shape)}")
            state[fx_k] = torch.from_numpy(init[k])
        model.load_state_dict(state)
        model._max_gradient_norm = params["max_gradient_norm"]  # BaseModel.fit sets it
        model._loss_sum, model._n_steps = 0.0, 0
        model.train()
        losses = [float(model.train_step(train.batch(torch.arange(s * b, (s + 1) * b))).item())
                  for s in range(spec["steps"])]
        model.eval()
        with torch.no_grad():
            prob = model.forward(valid.batch(torch.arange(valid.num_samples)))["y_pred"].view(-1)
        final = model.state_dict()
        np.savez(work / case / "fuxictr_final.npz", prob=prob.numpy(),
                 **{k: final[fx_k].numpy() for k, fx_k in mapping.items()})
        results[case] = {"losses": losses, "mapping": mapping}
    (work / "fuxictr_result.json").write_text(json.dumps(results, indent=2))


# ---------------------------------------------------------------------------------------------
# Parent: ours, in the project venv; starts the child and compares.
# ---------------------------------------------------------------------------------------------

def main(data_dir: Path | None, cache: Path, venv: Path, steps: int, batch_size: int, lr: float, seed: int,
         workdir: Path, out: Path | None) -> None:
    import numpy as np
    import polars as pl
    import torch

    from _common import machine, table, timed_child
    from task2.registry import build_model
    from task2.train import DIN_BASELINE_TRAIN, TrainConfig, make_optimizer, train_step

    torch.set_num_threads(1)
    ensure_venv(venv)
    data = ensure_data(data_dir, cache)
    ml = data / "MicroLens_1M_x1"
    workdir.mkdir(parents=True, exist_ok=True)

    # --- the rows: `steps` random batches of train, the first N_EVAL rows of valid ---
    items = item_tensors(ml)

    def columns(name: str, rows: np.ndarray | None) -> dict:
        df = pl.read_parquet(ml / f"{name}.parquet")
        df = df[rows] if rows is not None else df.head(N_EVAL)
        return {"item_seq": np.asarray(df["item_seq"].to_list(), dtype=np.int64),
                **{c: df[c].to_numpy().astype(np.int64) for c in ("item_id", "likes_level", "views_level")},
                "label": df["label"].to_numpy().astype(np.float32)}

    n_train = pl.scan_parquet(ml / "train.parquet").select(pl.len()).collect().item()
    if steps * batch_size > n_train:
        raise SystemExit(f"{ml / 'train.parquet'}: {n_train} rows, fewer than --steps x --batch-size")
    rows = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:steps * batch_size].numpy()
    train = {k: v.reshape(steps, batch_size, *v.shape[1:]) for k, v in columns("train", rows).items()}
    valid = columns("valid", None)
    np.savez(workdir / "batches.npz", **{f"train_{k}": v for k, v in train.items()}, **{f"eval_{k}": v for k, v in valid.items()})

    # --- our models' initial weights, one per case ---
    def ours_model(regs: dict):
        torch.manual_seed(seed)
        cfg = {"n_items": int(items["item_id"].shape[0]), "n_tags": int(items["item_tags"].max()) + 1,
               "net_dropout": 0.0, "attention_dropout": 0.0, **regs}
        return build_model({"model_class": "DIN", "config": cfg}, items["item_emb_d128"], items["item_tags"])

    for case, regs in CASES.items():
        state = ours_model(regs).state_dict()
        (workdir / case).mkdir(exist_ok=True)
        np.savez(workdir / case / "ours_init.npz", **{k: state[k].numpy() for k in ours_keys(state)})

    spec = {"data": str(data.resolve()), "workdir": str(workdir.resolve()), "cases": CASES, "steps": steps,
            "batch_size": batch_size, "lr": lr}
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    (workdir / "fuxictr_result.json").unlink(missing_ok=True)
    run = timed_child([str(venv / "bin" / "python"), str(Path(__file__).resolve()), "--_child",
                       str(workdir / "spec.json")], env={"OMP_NUM_THREADS": "1"})
    if run["exit_code"] != 0:
        raise SystemExit(f"the FuxiCTR child failed (exit {run['exit_code']}); its log is above")
    fx = json.loads((workdir / "fuxictr_result.json").read_text())

    # --- ours: the same steps, packed (what `harness train` runs) and padded (FuxiCTR's literal form) ---
    def batch(part: dict, step: int | None) -> dict:
        pick = (lambda v: v[step]) if step is not None else (lambda v: v)
        out = {k: torch.from_numpy(pick(v)) for k, v in part.items()}
        out["global_size"] = len(out["label"])
        return out

    class Padded(torch.nn.Module):
        """Runs the model's padded attention (FuxiCTR's literal computation) instead of the packed one."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *args, **kwargs):
            return self.model(*args, packed=False, **kwargs)

    train_cfg = TrainConfig(model_class="DIN", **{k: v for k, v in DIN_BASELINE_TRAIN.items() if k != "epochs"})
    train_cfg.learning_rate = lr

    def run_ours(regs: dict, packed: bool) -> tuple[list[float], np.ndarray, dict]:
        model = ours_model(regs)
        optimizer = make_optimizer(model, train_cfg)
        runner = model if packed else Padded(model)
        model.train()
        losses = []
        for s in range(steps):
            b = batch(train, s)
            reg = float(model.regularization_loss())  # FuxiCTR's step returns BCE + regulariser; ours the BCE sum
            bce, _, _ = train_step(runner, model, optimizer, b, train_cfg.grad_clip)
            losses.append(float(bce) / b["global_size"] + reg)
        model.eval()
        with torch.no_grad():
            e = batch(valid, None)
            prob = torch.sigmoid(runner(e["item_seq"], e["item_id"], e["likes_level"], e["views_level"]))
        return losses, prob.numpy(), {k: v.numpy() for k, v in model.state_dict().items()}

    def compare(a: tuple, b: tuple) -> dict:
        (la, pa, sa), (lb, pb, sb) = a, b
        rel = {k: float(np.abs(sa[k] - sb[k]).max() / max(np.abs(sb[k]).max(), 1e-12))
               for k in sb if not k.endswith("num_batches_tracked")}
        return {"loss_diff_step1": abs(la[0] - lb[0]), "max_loss_diff": max(abs(x - y) for x, y in zip(la, lb)),
                "max_prob_diff": float(np.abs(pa - pb).max()), "max_param_rel_diff": max(rel.values()),
                "loss_diff_by_step": [abs(x - y) for x, y in zip(la, lb)]}

    results, failed = [], []
    for case, regs in CASES.items():
        final = dict(np.load(workdir / case / "fuxictr_final.npz"))
        fx_run = (fx[case]["losses"], final.pop("prob"), final)
        packed, padded = run_ours(regs, True), run_ours(regs, False)
        vs_fx = compare(packed, fx_run)
        floor = compare(packed, (padded[0], padded[1], {k: padded[2][k] for k in final}))
        ok = (vs_fx["loss_diff_step1"] <= LOSS0_TOL
              and vs_fx["max_prob_diff"] <= max(PROB_TOL, FLOOR_FACTOR * floor["max_prob_diff"]))
        if not ok:
            failed.append(case)
        results.append({"case": case, **regs, "steps": steps, "ok": ok,
                        "fuxictr_loss_first_last": [fx_run[0][0], fx_run[0][-1]],
                        "ours_vs_fuxictr": vs_fx, "ours_packed_vs_padded": floor})

    rows_ = [{"case": r["case"], "emb_reg": r["embedding_regularizer"], "net_reg": r["net_regularizer"],
              "fx loss 1st->last": f"{r['fuxictr_loss_first_last'][0]:.4f}->{r['fuxictr_loss_first_last'][1]:.4f}",
              **{f"{name} {col}": f"{r[pair][key]:.1e}" for pair, name in
                 (("ours_vs_fuxictr", "vs fx"), ("ours_packed_vs_padded", "rounding"))
                 for key, col in (("loss_diff_step1", "|dloss| 1"), ("max_loss_diff", "|dloss| max"),
                                  ("max_prob_diff", "|dprob|"))},
              "same": "yes" if r["ok"] else "NO"} for r in results]
    print(table(rows_, list(rows_[0])))
    doc = {"benchmark": "din_step_check", "command": "din_step_check.py " + " ".join(sys.argv[1:]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "data": {"path": str(data), "train_rows": int(n_train), "eval_rows": N_EVAL},
           "config": {"steps": steps, "batch_size": batch_size, "learning_rate": lr, "seed": seed,
                      "dropout": 0.0, "tolerances": {"loss_step1": LOSS0_TOL, "prob": PROB_TOL, "prob_rounding_factor": FLOOR_FACTOR}},
           "child_process": run, "results": results, "machine": machine()}
    out = out or ROOT / "bench" / "results" / f"din_step_check_{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    if failed:
        raise SystemExit(f"the steps differ from FuxiCTR's for: {', '.join(failed)} (see {out})")


def cli():
    """The command line; click is imported here, not at the top: the fuxictr venv that runs the child has none."""
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__.split("\n\n")[0])
    @data_venv_options
    @click.option("--steps", type=int, default=10, show_default=True, help="Training steps each model takes.")
    @click.option("--batch-size", type=int, default=256, show_default=True)
    @click.option("--lr", type=float, default=1.76777e-4, show_default=True,
                  help="Adam's learning rate (default: the fitted value for the demo's 120,000 rows).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Initial weights and the rows drawn.")
    @click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path("/tmp/din_step_check"),
                  show_default=True)
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                  help="JSON path [default: bench/results/din_step_check_<date>.json].")
    def command(**options):
        main(**options)

    return command


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_child":  # in the fuxictr venv (no click there)
        child(json.loads(Path(sys.argv[2]).read_text()))
    else:
        cli()()
