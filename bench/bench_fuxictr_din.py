"""The challenge's own baseline stack (DIN on FuxiCTR 2.3.7 from PyPI) on our data, next to our Task 2 model.

    .venv/bin/python bench/bench_fuxictr_din.py [--data DATA_DIR] [--epochs 10] [--max-train-minutes M]
        [--threads 2] [--venv /work/fuxictr-venv] [--ours bench/results/task2_worlds_demo_2026-12-03.json] [--out PATH]

What it measures: FuxiCTR's DIN with the official baseline config (embedding_dim 64, batch 8192, Adam
lr 1e-3, early stopping on valid AUC with patience 3, FuxiCTR's reduce-LR-on-plateau, grad norm 10,
embedding_regularizer 1e-6, net_dropout 0.1, batch norm, attention [512, 256], DNN [1024, 512, 256],
item_seq of 64 with DIN target attention over [item_id, item_tags, item_emb_d128]) trained by
FuxiCTR's own `BaseModel.fit`. Per epoch: training seconds (data loading included), evaluation seconds,
train samples/s, train loss, valid AUC (FuxiCTR evaluates only the monitored metric per epoch), learning rate.
--max-train-minutes stops after the epoch that leaves too little time for another (on a 2-core CPU one
epoch of the demo data at batch 8192 takes minutes); the JSON then says the run did not converge. Then the best checkpoint predicts the
test split, which is scored against oracle/ground_truth.csv with sklearn's roc_auc_score. The table
puts it next to our model's recorded result (--ours), the oracle and the popularity AUCs, with the
ratio of training seconds per epoch. JSON goes to bench/results/fuxictr_din_demo_<date>.json.

fuxictr never enters the project venv: it runs in a child process in a separate venv (--venv), created
here when missing with the pinned installs in VENV_INSTALL. The wheel ships FuxiCTR's layers, BaseModel
and feature processing but not the DIN model class (that lives in the FuxiCTR repository's model_zoo),
so `_din_class` composes DIN from the wheel's FeatureEmbedding, DIN_Attention and MLP_Block on top of
its BaseModel; the code that embeds, attends, trains, early-stops and evaluates is FuxiCTR's. The batch
loader is written here (the baseline's lived in its repository too): same batches as the baseline's
MMCTRDataLoader, built with tensor gathers instead of a pandas .iloc per batch.

Without --data the demo dataset is generated with `harness.synth` (seed 0) under --cache.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The separate venv. numpy<2: BaseModel.fit uses np.Inf, removed in numpy 2.0; pandas<3: pandas 3
# needs numpy>=2; scikit-learn<1.5: fuxictr.metrics calls log_loss(eps=...), removed in 1.5. torch
# pinned to the project's CPU wheel (an unpinned torch pulls the CUDA build).
VENV_INSTALL = ["torch==2.13.0", "fuxictr==2.3.7", "numpy<2", "pandas<3", "scikit-learn<1.5"]
OURS_DEFAULT = ROOT / "bench" / "results" / "task2_worlds_demo_2026-12-03.json"  # its DIN rows

# The official baseline (DIN_MicroLens_1M_x1 on FuxiCTR 2.3.7), as challenge.md and task2.din.DINConfig
# describe it. Keys are FuxiCTR's own parameter names.
BASELINE = {
    "model": "DIN", "loss": "binary_crossentropy", "metrics": ["AUC", "logloss"],
    "task": "binary_classification", "optimizer": "adam", "learning_rate": 1.0e-3,
    "embedding_regularizer": 1.0e-6, "net_regularizer": 0, "batch_size": 8192, "embedding_dim": 64,
    "dnn_hidden_units": [1024, 512, 256], "dnn_activations": "ReLU",
    "attention_hidden_units": [512, 256], "attention_hidden_activations": "ReLU",
    "attention_output_activation": None, "attention_dropout": 0.1, "din_use_softmax": False,
    "net_dropout": 0.1, "batch_norm": True, "shuffle": True, "seed": 20242025, "monitor": "AUC",
    "monitor_mode": "max", "max_len": 64, "early_stop_patience": 3, "save_best_only": True,
    "eval_steps": None, "group_id": "user_id", "verbose": 0, "max_gradient_norm": 10.0,
    "reduce_lr_on_plateau": True,  # BaseModel's default: lr *= 0.1 after an epoch without a new best
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Child: runs in the fuxictr venv. Imports fuxictr only inside functions, so the parent never needs it.
# ---------------------------------------------------------------------------------------------

def _din_class():
    """DIN as a FuxiCTR BaseModel, composed from the wheel's own layers."""
    import torch
    from fuxictr.pytorch.layers import DIN_Attention, FeatureEmbedding, MLP_Block
    from fuxictr.pytorch.models import BaseModel

    class DIN(BaseModel):
        """Target item and history items = [item_id emb, pooled item_tags emb, Linear(item_emb_d128)];
        DIN_Attention pools the history; MLP_Block over [likes, views, target, pooled] -> sigmoid."""

        def __init__(self, feature_map, model_id="DIN", gpu=-1, learning_rate=1e-3, embedding_dim=64,
                     dnn_hidden_units=(1024, 512, 256), dnn_activations="ReLU",
                     attention_hidden_units=(512, 256), attention_hidden_activations="ReLU",
                     attention_output_activation=None, attention_dropout=0.1, din_use_softmax=False,
                     net_dropout=0.0, batch_norm=True, embedding_regularizer=None, net_regularizer=None,
                     **kwargs):
            super().__init__(feature_map, model_id=model_id, gpu=gpu,
                             embedding_regularizer=embedding_regularizer, net_regularizer=net_regularizer,
                             **kwargs)
            self.item_dim = sum(spec.get("embedding_dim", embedding_dim)
                                for spec in feature_map.features.values() if spec.get("source") == "item")
            self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
            self.attention = DIN_Attention(self.item_dim, attention_units=list(attention_hidden_units),
                                           hidden_activations=attention_hidden_activations,
                                           output_activation=attention_output_activation,
                                           dropout_rate=attention_dropout, use_softmax=din_use_softmax)
            self.dnn = MLP_Block(input_dim=feature_map.sum_emb_out_dim() + self.item_dim, output_dim=1,
                                 hidden_units=list(dnn_hidden_units), hidden_activations=dnn_activations,
                                 output_activation=self.output_activation, dropout_rates=net_dropout,
                                 batch_norm=batch_norm)
            self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
            self.reset_parameters()
            self.model_to_device()
            self.epoch_rows: list[dict] = []

        # --- inputs: (batch_dict, item_dict, mask) as the baseline's loader yields them ---
        def get_inputs(self, inputs, feature_source=None):
            batch, items, mask = inputs
            keep = {k: v.to(self.device) for k, v in batch.items()
                    if k not in self.feature_map.labels and self.feature_map.features[k]["type"] != "meta"}
            return keep, {k: v.to(self.device) for k, v in items.items()}, mask.to(self.device)

        def get_labels(self, inputs):
            return inputs[0][self.feature_map.labels[0]].to(self.device).float().view(-1, 1)

        def get_group_id(self, inputs):
            return inputs[0][self.feature_map.group_id]

        def forward(self, inputs):
            batch, items, mask = self.get_inputs(inputs)
            context = self.embedding_layer(batch, flatten_emb=True)  # (B, 2 * emb) likes, views
            item_vecs = self.embedding_layer(items, flatten_emb=True)  # (B * (L + 1), Di)
            item_vecs = item_vecs.view(mask.shape[0], -1, self.item_dim)  # (B, L + 1, Di)
            target, history = item_vecs[:, -1], item_vecs[:, :-1]  # (B, Di), (B, L, Di)
            pooled = self.attention(target, history, mask)  # (B, Di)
            return {"y_pred": self.dnn(torch.cat([context, target, pooled], dim=-1))}  # (B, 1)

        # --- measurement hooks around FuxiCTR's own loop (fit -> train_epoch -> eval_step) ---
        def train_epoch(self, data_generator):
            self._t_epoch = time.perf_counter()
            self._loss_sum, self._n_steps = 0.0, 0
            self._lr_in_epoch = self.optimizer.param_groups[0]["lr"]
            super().train_epoch(data_generator)

        def train_step(self, batch_data):
            loss = super().train_step(batch_data)
            self._loss_sum += float(loss.item())
            self._n_steps += 1
            return loss

        def evaluate(self, data_generator, metrics=None):
            self._last_logs = super().evaluate(data_generator, metrics=metrics)
            return self._last_logs

        def eval_step(self):
            t_train = time.perf_counter() - self._t_epoch
            super().eval_step()  # evaluate, checkpoint / early-stop / reduce LR, back to train mode
            t_eval = time.perf_counter() - self._t_epoch - t_train
            n = self.train_samples
            row = {"epoch": self._epoch_index + 1, "train_s": round(t_train, 2), "eval_s": round(t_eval, 2),
                   "epoch_s": round(t_train + t_eval, 2), "samples_per_s": round(n / t_train, 1),
                   "train_loss": self._loss_sum / max(self._n_steps, 1), "lr": self._lr_in_epoch,
                   "valid_auc": float(self._last_logs["AUC"]), "best": self._stopping_steps == 0}
            self.epoch_rows.append(row)
            elapsed = time.perf_counter() - self.fit_started
            if self.max_train_s and not self._stop_training and elapsed + row["epoch_s"] > self.max_train_s:
                self._stop_training = True  # another epoch would overrun --max-train-minutes
                self.stopped_by_time = True
            log(f"[fuxictr DIN] epoch {row['epoch']}: train {row['train_s']:.1f}s ({row['samples_per_s']:.0f}/s) "
                f"eval {row['eval_s']:.1f}s loss {row['train_loss']:.4f} valid AUC {row['valid_auc']:.4f}"
                f"{' *' if row['best'] else ''}")

    return DIN


class _Batches:
    """Batches of (batch_dict, item_dict, mask) as the baseline's MMCTRDataLoader makes them.

    batch_dict: user_id, likes_level, views_level[, label]; item_dict: item_id, item_tags, item_emb_d128
    for the B x (max_len history + 1 target) items, flattened; mask (B, max_len): 1 for real history items.
    """

    def __init__(self, columns: dict, item_seq, item_id, item_table: dict, batch_size: int, max_len: int,
                 shuffle: bool = False, seed: int = 0):
        import torch

        self.torch = torch
        self.columns, self.item_table = columns, item_table
        self.item_seq, self.item_id = item_seq[:, -max_len:], item_id  # (N, L), (N,)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.num_samples = int(item_id.shape[0])
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self):
        torch = self.torch
        order = (torch.randperm(self.num_samples, generator=self.generator) if self.shuffle
                 else torch.arange(self.num_samples))
        for start in range(0, self.num_samples, self.batch_size):
            yield self.batch(order[start:start + self.batch_size])

    def batch(self, idx):
        """The rows `idx` (B,) as (batch_dict, item_dict, mask)."""
        seqs = self.item_seq[idx]  # (B, L)
        ids = self.torch.cat([seqs, self.item_id[idx, None]], dim=1).reshape(-1)  # (B * (L + 1),)
        batch = {k: v[idx] for k, v in self.columns.items()}
        items = {k: v[ids] for k, v in self.item_table.items()}
        return batch, items, (seqs > 0).float()


def item_tensors(data: Path) -> dict:
    """item_info.parquet of `data` (MicroLens_1M_x1/) as tensors: item_id, item_tags, item_emb_d128 (row i = item i)."""
    import numpy as np
    import polars as pl
    import torch

    info = pl.read_parquet(data / "item_info.parquet").sort("item_id")
    table = {"item_id": torch.from_numpy(info["item_id"].to_numpy().astype(np.int64)),
             "item_tags": torch.from_numpy(np.asarray(info["item_tags"].to_list(), dtype=np.int64)),
             "item_emb_d128": torch.from_numpy(np.asarray(info["item_emb_d128"].to_list(), dtype=np.float32))}
    if not bool((table["item_id"] == torch.arange(len(info))).all()):
        raise SystemExit(f"{data / 'item_info.parquet'}: item_id must run 0..N-1 (row i = item i)")
    return table


def build_feature_map(params: dict, data: Path, work: Path, n_items: int, n_tags: int):
    """FuxiCTR's FeatureMap for the baseline's features, built its way (FeatureProcessor + build_dataset with
    rebuild_dataset=False, i.e. from the specs). Updates `params` with the paths FuxiCTR reads."""
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    feature_cols = [
        {"name": "user_id", "active": True, "dtype": "int", "type": "meta"},
        {"name": "item_seq", "active": True, "dtype": "int", "type": "meta"},
        {"name": "likes_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
        {"name": "views_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
        {"name": "item_id", "active": True, "dtype": "int", "type": "categorical", "vocab_size": n_items,
         "source": "item"},
        {"name": "item_tags", "active": True, "dtype": "int", "type": "sequence", "max_len": 5,
         "vocab_size": n_tags, "source": "item"},
        {"name": "item_emb_d128", "active": True, "dtype": "float", "type": "embedding", "source": "item",
         "embedding_dim": 128},
    ]
    params.update({"dataset_id": "MicroLens_1M_x1", "data_root": str(work / "data"), "data_format": "parquet",
                   "train_data": str(data / "train.parquet"), "valid_data": str(data / "valid.parquet"),
                   "test_data": str(data / "test.parquet"), "rebuild_dataset": False,
                   "feature_cols": feature_cols, "label_col": {"name": "label", "dtype": "float"},
                   "model_root": str(work / "checkpoints"), "gpu": -1})
    encoder = FeatureProcessor(**params)
    build_dataset(encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], str(work / "data" / params["dataset_id"]))
    feature_map.load(str(work / "data" / params["dataset_id"] / "feature_map.json"), params)
    (work / "checkpoints" / params["dataset_id"]).mkdir(parents=True, exist_ok=True)
    return feature_map


def child(spec: dict) -> dict:
    """Train, evaluate and predict with FuxiCTR in this process (the fuxictr venv); return the measurements."""
    import logging
    import resource
    from importlib import metadata

    import numpy as np
    import polars as pl
    import torch
    from fuxictr.pytorch.torch_utils import seed_everything
    from sklearn.metrics import roc_auc_score

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s fuxictr %(message)s")
    torch.set_num_threads(int(spec["threads"]))
    params = dict(spec["params"])
    seed_everything(seed=params["seed"])
    data = Path(spec["data"]) / "MicroLens_1M_x1"
    work = Path(spec["workdir"])

    # --- data: the demo parquet files as tensors; item_info is positional (row i = item i) ---
    t0 = time.perf_counter()
    item_table = item_tensors(data)

    def split(name: str):
        df = pl.read_parquet(data / f"{name}.parquet")
        cols = {c: torch.from_numpy(df[c].to_numpy().astype(np.int64))
                for c in ("user_id", "likes_level", "views_level") if c in df.columns}
        if "label" in df.columns:
            cols["label"] = torch.from_numpy(df["label"].to_numpy().astype(np.float32))
        seq = torch.from_numpy(np.asarray(df["item_seq"].to_list(), dtype=np.int64))
        ids = torch.from_numpy(df["item_id"].to_numpy().astype(np.int64))
        row_ids = df["ID"].to_numpy() if "ID" in df.columns else None
        return cols, seq, ids, row_ids

    train_cols, train_seq, train_ids, _ = split("train")
    valid_cols, valid_seq, valid_ids, _ = split("valid")
    test_cols, test_seq, test_ids, test_row_ids = split("test")
    load_s = time.perf_counter() - t0

    # --- FuxiCTR's feature map, built the baseline's way (rebuild_dataset=False: from the specs) ---
    n_items = int(item_table["item_id"].shape[0])
    n_tags = int(item_table["item_tags"].max()) + 1
    feature_map = build_feature_map(params, data, work, n_items, n_tags)

    model = _din_class()(feature_map, **params)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bs, max_len = params["batch_size"], params["max_len"]
    train_gen = _Batches(train_cols, train_seq, train_ids, item_table, bs, max_len, shuffle=params["shuffle"],
                         seed=params["seed"])
    valid_gen = _Batches(valid_cols, valid_seq, valid_ids, item_table, bs, max_len)
    test_gen = _Batches(test_cols, test_seq, test_ids, item_table, bs, max_len)
    model.train_samples = train_gen.num_samples
    model.max_train_s, model.stopped_by_time = spec.get("max_train_s"), False
    model.fit_started = time.perf_counter()

    t0 = time.perf_counter()
    model.fit(train_gen, epochs=spec["epochs"], validation_data=valid_gen,
              max_gradient_norm=params["max_gradient_norm"])  # ends by loading the best checkpoint
    fit_s = time.perf_counter() - t0

    valid_logs = model.evaluate(valid_gen)
    t0 = time.perf_counter()
    test_pred = model.predict(test_gen)
    predict_s = time.perf_counter() - t0
    truth = pl.read_csv(Path(spec["data"]) / "oracle" / "ground_truth.csv").sort("ID")
    if test_row_ids is None or not np.array_equal(np.sort(test_row_ids), truth["ID"].to_numpy()):
        raise SystemExit("test.parquet IDs do not match oracle/ground_truth.csv")
    order = np.argsort(test_row_ids)
    test_auc = float(roc_auc_score(truth["label"].to_numpy(), test_pred[order]))

    rows = model.epoch_rows
    best = max((r for r in rows if r["best"]), key=lambda r: r["epoch"], default=None)
    stopped_early = model._stopping_steps >= params["early_stop_patience"]
    versions = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    return {
        "epochs": rows, "epochs_run": len(rows), "early_stopped": stopped_early,
        "stopped_by_time_cap": model.stopped_by_time,
        "best_epoch": best["epoch"] if best else None,
        "valid_auc": float(valid_logs["AUC"]), "valid_logloss": float(valid_logs["logloss"]),
        "test_auc": test_auc, "predict_seconds": round(predict_s, 2),
        "predict_samples_per_s": round(len(test_pred) / predict_s, 1),
        "fit_seconds": round(fit_s, 2), "data_load_seconds": round(load_s, 2),
        "seconds_per_epoch_train": round(sum(r["train_s"] for r in rows) / len(rows), 2),
        "seconds_per_epoch_with_eval": round(sum(r["epoch_s"] for r in rows) / len(rows), 2),
        "train_samples_per_s": round(len(rows) * train_gen.num_samples / sum(r["train_s"] for r in rows), 1),
        "trainable_parameters": int(n_params), "feature_map": feature_map.features,
        "vocab": {"item_id": n_items, "item_tags": n_tags},
        "rows": {"train": train_gen.num_samples, "valid": valid_gen.num_samples, "test": test_gen.num_samples},
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": sys.version.split()[0], "versions": dict(sorted(versions.items())),
    }


# ---------------------------------------------------------------------------------------------
# Parent: runs in the project venv. Makes the venv and the data, starts the child, renders, writes JSON.
# ---------------------------------------------------------------------------------------------

def ensure_venv(venv: Path, extra: list[str] | None = None) -> list[str]:
    """Create `venv` with VENV_INSTALL (and `extra` requirements, e.g. the peer's pyarrow) when it lacks
    them; return the commands that were run."""
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import fuxictr.pytorch.models, numpy, sklearn; assert int(numpy.__version__.split('.')[0]) < 2;"
             " assert tuple(map(int, sklearn.__version__.split('.')[:2])) < (1, 5)"
             + ("; import pyarrow, pandas; pandas.DataFrame({'a': [1]}).to_parquet('/dev/null')" if extra else "")]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return []
    cmds = [["python3", "-m", "venv", str(venv)], [str(py), "-m", "pip", "install", *VENV_INSTALL, *(extra or [])]]
    for cmd in cmds:
        log("$ " + " ".join(cmd))
        if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
            raise SystemExit(f"could not set up {venv}: `{' '.join(cmd)}` failed; see the output above")
    return [" ".join(c) for c in cmds]


def ensure_data(data: Path | None, cache: Path) -> Path:
    if data is not None:
        if not (data / "MicroLens_1M_x1" / "train.parquet").is_file() or not (data / "oracle").is_dir():
            raise SystemExit(f"{data}: expected MicroLens_1M_x1/*.parquet and oracle/ (make it with "
                             f"`python -m harness synth {data} --scale demo --seed 0`)")
        return data
    if not (cache / "oracle" / "ground_truth.csv").is_file():
        cmd = [sys.executable, "-m", "harness", "synth", str(cache), "--scale", "demo", "--seed", "0"]
        log("$ " + " ".join(cmd))
        if subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode != 0:
            raise SystemExit(f"generating the demo data into {cache} failed; see the output above")
    return cache


def ours_row(path: Path, oracle: dict | None = None, model_class: str = "DIN") -> dict:
    if not path.is_file():
        raise SystemExit(f"{path}: our model's recorded result is missing (run bench/bench_task2.py or pass --ours)")
    doc = json.loads(path.read_text())
    if "rows" in doc:  # bench_task2's worlds JSON: our DIN (seed 0) on the data's world
        world = (oracle or {}).get("world", {}).get("name") if isinstance((oracle or {}).get("world"), dict) \
            else (oracle or {}).get("world")
        res = next((r for r in doc["rows"] if r.get("model_class") == model_class and r.get("seed", 0) == 0
                    and (world is None or r.get("world") == world)), None)
        if res is None:
            raise SystemExit(f"{path}: no {model_class} row (seed 0) for world {world!r}")
        res = {**res, "config": res["train_config"]}
    else:
        res = next((r for r in doc["results"] if r.get("variant") == "length_aware"), doc["results"][0])
    return {"file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "model_class": res["model_class"], "valid_auc": res["valid_auc"], "test_auc": res["test_auc"],
            "seconds_per_epoch_train": res["seconds_per_epoch"], "best_epoch": res["best_epoch"],
            "epochs_run": res["epochs_run"], "batch_size": res["config"]["batch_size"],
            "torch_threads": res["torch_threads"], "date": doc["date"], "data": doc.get("data"),
            "valid_auc_by_epoch": res.get("valid_auc_by_epoch"), "learning_rate": res["config"].get("learning_rate")}


def main(data_dir: Path | None, cache: Path, venv: Path, epochs: int, threads: int, max_train_minutes: float | None,
         ours_json: Path, fit_to_data: bool, seed: int | None, workdir: Path, out: Path | None) -> None:
    """The parent: make the venv and the data, train in the child, render the table, write the JSON."""
    import torch

    from _common import machine, table, timed_child

    torch.set_num_threads(threads)
    installed = ensure_venv(venv)
    data = ensure_data(data_dir, cache)
    oracle = json.loads((data / "oracle" / "oracle.json").read_text())
    ours = ours_row(ours_json.resolve(), oracle)
    params = dict(BASELINE)
    if fit_to_data:
        import polars as pl

        from task2.din import fit_din_tunables

        n_train = pl.scan_parquet(data / "MicroLens_1M_x1" / "train.parquet").select(pl.len()).collect().item()
        fit = fit_din_tunables(n_train)
        params.update(batch_size=fit["batch_size"], learning_rate=fit["learning_rate"])
    if seed is not None:  # FuxiCTR's seed_everything seed: another run of the same config, for its spread
        params["seed"] = seed
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"data": str(data.resolve()), "workdir": str(workdir.resolve()), "epochs": epochs,
            "max_train_s": max_train_minutes * 60 if max_train_minutes else None, "threads": threads, "params": params, "result": str((workdir / "result.json").resolve())}
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    Path(spec["result"]).unlink(missing_ok=True)

    load_start = list(os.getloadavg())
    log(f"training FuxiCTR DIN in {venv} (threads {threads}, max {epochs} epochs)")
    run = timed_child([str(venv / "bin" / "python"), str(Path(__file__).resolve()), "--_child",
                       str(workdir / "spec.json")], env={"OMP_NUM_THREADS": str(threads)})
    if run["exit_code"] != 0 or not Path(spec["result"]).is_file():
        raise SystemExit(f"the FuxiCTR child failed (exit {run['exit_code']}); its log is above")
    fx = json.loads(Path(spec["result"]).read_text())
    load_end = list(os.getloadavg())

    auc = oracle["auc"]
    ratio = fx["seconds_per_epoch_train"] / ours["seconds_per_epoch_train"]
    rows = [
        {"system": "FuxiCTR 2.3.7 DIN (" + ("fitted batch/lr" if fit_to_data else "official config") + ")", "valid_auc": f"{fx['valid_auc']:.4f}",
         "test_auc": f"{fx['test_auc']:.4f}", "s/epoch": f"{fx['seconds_per_epoch_train']:.1f}",
         "vs ours": f"{ratio:.2f}x", "best/run": f"{fx['best_epoch']}/{fx['epochs_run']}", "batch": params["batch_size"]},
        {"system": f"ours: {ours['model_class']} ({ours['date'][:10]})", "valid_auc": f"{ours['valid_auc']:.4f}",
         "test_auc": f"{ours['test_auc']:.4f}", "s/epoch": f"{ours['seconds_per_epoch_train']:.1f}", "vs ours": "1.00x",
         "best/run": f"{ours['best_epoch']}/{ours['epochs_run']}", "batch": ours["batch_size"]},
        {"system": "oracle (Bayes-optimal)", "valid_auc": f"{auc['valid']['oracle']:.4f}",
         "test_auc": f"{auc['test']['oracle']:.4f}"},
        {"system": "popularity", "valid_auc": f"{auc['valid']['popularity']:.4f}",
         "test_auc": f"{auc['test']['popularity']:.4f}"},
    ]
    print(table(rows, ["system", "valid_auc", "test_auc", "s/epoch", "vs ours", "best/run", "batch"]))
    print(f"(s/epoch = training seconds per epoch, eval excluded; {threads} torch threads; "
          f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end)")

    notes = [
        "The fuxictr 2.3.7 wheel has no DIN class (model_zoo is not packaged; only model_zoo/multitask/__init__.py). "
        "DIN is composed here from the wheel's FeatureEmbedding, DIN_Attention and MLP_Block on its BaseModel, "
        "following the official baseline; training, early stopping, LR reduction and evaluation are BaseModel.fit/evaluate.",
        "The batch loader is written here (the baseline's MMCTRDataLoader lives in the baseline repository, not the wheel): "
        "same (batch_dict, item_dict, mask) batches, built by tensor gathers instead of a pandas .iloc per batch, "
        "so s/epoch here excludes the baseline loader's pandas overhead; shuffling uses a seeded torch.Generator.",
        "Feature map built by FuxiCTR's FeatureProcessor + build_dataset with rebuild_dataset=False, as the baseline does; "
        f"vocab sizes are the demo data's (item_id {fx['vocab']['item_id']}, item_tags {fx['vocab']['item_tags']}) "
        "instead of 91718 / 11740.",
        "attention_hidden_activations=ReLU as in the emb-64 baseline config we found and in task2.din.DINAttention; "
        "one public fork of the baseline config has Dice. embedding_regularizer 1e-6 and net_dropout 0.1 are the values "
        "task2.din.DINConfig records for the baseline (the baseline's tuner space was 1e-6/1e-7 and 0.1/0.2).",
        "reduce_lr_on_plateau is BaseModel's default True (lr x0.1 after each epoch without a new best); "
        "task2.train.DIN_BASELINE_TRAIN models the same (lr_decay 0.1, min_learning_rate 1e-6) since 714a34e.",
        "Venv pins numpy<2 (BaseModel.fit uses np.Inf, gone in numpy 2) and so pandas<3, and scikit-learn<1.5 "
        "(fuxictr.metrics passes eps= to log_loss, removed in sklearn 1.5); polars is whatever pip picks "
        "(FeatureProcessor.read_data's pl.col().apply is gone in polars>=1, but rebuild_dataset=False never calls it).",
        "CPU only, float32; FuxiCTR's seed_everything sets only cudnn.deterministic (no deterministic algorithms).",
        "torch 2.13 torch.load defaults to weights_only=True; BaseModel.load_weights loads a plain state_dict, which works.",
        f"Ours ({ours['model_class']}) trained {ours['epochs_run']} epochs at batch {ours['batch_size']}; FuxiCTR DIN "
        f"at batch {params['batch_size']} takes {-(-fx['rows']['train'] // params['batch_size'])} optimizer steps "
        "per epoch on this data"
        + (", the same schedule as ours, so per-epoch AUCs compare like for like."
           if ours["model_class"] == "DIN" and ours["batch_size"] == params["batch_size"]
           else ", so per-epoch AUCs are not a like-for-like convergence comparison."),
    ]
    if fx["stopped_by_time_cap"]:
        notes.append(f"Stopped by --max-train-minutes {max_train_minutes} after {fx['epochs_run']} epoch(s), "
                     "before early stopping: the AUCs are those of a baseline that has not converged (patience 3).")
    elif not fx["early_stopped"]:
        notes.append(f"Stopped at the --epochs cap ({epochs}) without early stopping: the result is not converged "
                     "in the baseline's sense (patience 3).")

    date = dt.date.today().isoformat()
    out = out or ROOT / "bench" / "results" / f"fuxictr_din_demo_{date}.json"
    doc = {
        "benchmark": "fuxictr_din",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "load_average_at_start": load_start, "load_average_at_end": load_end,
        "versions": {"parent": {"python": sys.version.split()[0], "torch": torch.__version__},
                     "fuxictr_venv": {"path": str(venv), "python": fx["python"],
                                      "install": ["python3 -m venv " + str(venv),
                                                  f"{venv}/bin/python -m pip install " + " ".join(
                                                      f'"{p}"' if "<" in p else p for p in VENV_INSTALL)],
                                      "installed_this_run": installed, "packages": fx["versions"]}},
        "data": {"path": str(data), "rows": fx["rows"], "scale": oracle.get("scale"), "seed": oracle.get("seed")},
        "config": {"fuxictr": params, "fit_to_data": fit_to_data, "max_epochs": epochs, "threads": threads,
                   "max_train_minutes": max_train_minutes,
                   "feature_map": fx["feature_map"], "trainable_parameters": fx["trainable_parameters"]},
        "fuxictr_din": {k: fx[k] for k in ("epochs", "epochs_run", "early_stopped", "stopped_by_time_cap", "best_epoch", "valid_auc",
                                           "valid_logloss", "test_auc", "seconds_per_epoch_train",
                                           "seconds_per_epoch_with_eval", "train_samples_per_s", "predict_seconds",
                                           "predict_samples_per_s", "fit_seconds", "data_load_seconds",
                                           "torch_threads", "peak_rss_mib")},
        "child_process": run,
        "ours": ours,
        "reference_auc": {split: {k: auc[split][k] for k in ("oracle", "popularity")} for split in ("valid", "test")},
        "seconds_per_epoch_ratio_fuxictr_over_ours": round(ratio, 3),
        "notes": notes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    log(f"wrote {out}")


def child_main(spec_path: Path) -> None:
    """The child: run in the fuxictr venv by the parent, which reads the result file it writes."""
    spec = json.loads(spec_path.read_text())
    result = child(spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=2))


def data_venv_options(command):
    """--data, --cache and --venv, shared by the scripts that run FuxiCTR (click is imported here: the fuxictr
    venv that runs the children has none)."""
    import click

    options = [
        click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
                     help="Dataset root (MicroLens_1M_x1/ and oracle/) [default: the demo data, made under --cache]."),
        click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=Path("/tmp/fx_demo"),
                     show_default=True, help="Where the demo data is generated."),
        click.option("--venv", type=click.Path(path_type=Path, file_okay=False), default=Path("/work/fuxictr-venv"),
                     show_default=True, help="The fuxictr venv (made if missing)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def cli():
    """The command line. click is imported here, not at the top: the fuxictr venv that runs the child has none."""
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__.split("\n\n")[0])
    @data_venv_options
    @click.option("--epochs", type=int, default=10, show_default=True,
                  help="Max epochs (early stopping may end sooner).")
    @click.option("--threads", type=int, default=2, show_default=True,
                  help="torch.set_num_threads in parent and child.")
    @click.option("--max-train-minutes", type=float,
                  help="Stop after the epoch that leaves too little time for another [default: no cap].")
    @click.option("--ours", "ours_json", type=click.Path(path_type=Path, dir_okay=False), default=OURS_DEFAULT,
                  show_default=str(OURS_DEFAULT.relative_to(ROOT)),
                  help="Our model's bench_task2 JSON (a worlds JSON: its DIN row for the data's world).")
    @click.option("--fit-to-data", is_flag=True,
                  help="batch_size and learning_rate from task2.train.fit_din_tunables for the train rows (what the "
                       "harness's Track 1 DIN uses) instead of the official 8192 / 1e-3.")
    @click.option("--seed", type=int, default=None,
                  help="FuxiCTR's seed [default: the baseline config's 20242025].")
    @click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path("/tmp/fuxictr_din_run"),
                  show_default=True)
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                  help="JSON path [default: bench/results/fuxictr_din_demo_<date>.json].")
    def command(**options):
        main(**options)

    return command


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_child":  # in the fuxictr venv (no click there)
        child_main(Path(sys.argv[2]))
    else:
        cli()()
