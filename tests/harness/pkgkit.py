"""Helpers for the rules / package / verify tests (a plain module: test folders here are not packages).

- `make_run` writes a RUN_DIR the way the pipeline does (task2/ run folder, prediction/ from the real
  `task2.predict.predict`, task1/ for tracks 1 and 3) from a freshly initialised model instead of a
  trained one: packaging and verification do not care how good the weights are, and it takes a second.
- `resign` rewrites MANIFEST.json's file list after a test edits a package, so that a test of one rule
  is not also a test of PKG-MANIFEST; `repredict` rewrites prediction.csv consistently everywhere
  (zip, predict.json, manifest), which only a re-run can catch.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
from core.challenge import DATASET_DIR

SMALL_MODEL = {"id_emb_dim": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 8, "mlp_dims": [16],
               "cross_layers": 1, "level_dim": 4}
SMALL_TRAIN = {"model_class": "SASRecDCN", "model": SMALL_MODEL, "epochs": 1, "batch_size": 2048, "seed": 0}
SEEDING = {"seed": 0, "deterministic_algorithms": True, "cudnn_benchmark": False, "cudnn_deterministic": True,
           "tf32_matmul": False, "tf32_cudnn": False, "cublas_workspace_config": ":4096:8",
           "pythonhashseed": "0", "notes": []}
TASK1_MODELS = [
    {"role": "image", "id": "openai/clip-vit-large-patch14", "source": "hub", "revision": "32bd6426",
     "sha256": None, "license": "MIT (openai/CLIP)", "dim": 768},
    {"role": "text", "id": "intfloat/multilingual-e5-base", "source": "hub", "revision": "d13f1b27",
     "sha256": None, "license": "MIT", "dim": 768},
]


def write_json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def task1_item_info(data: Path, out: Path) -> Path:
    """A Task 1 style item_info: the official schema, embeddings of its own (row 0 stays zero)."""
    frame = pl.read_parquet(data / DATASET_DIR / "item_info.parquet")
    emb = frame["item_emb_d128"].to_numpy().copy()
    emb[1:] = np.tanh(emb[1:][:, ::-1] * 0.5 + 0.01)  # a different, deterministic table
    frame = frame.with_columns(pl.Series("item_emb_d128", emb, dtype=pl.Array(pl.Float64, 128)))
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    return out


def make_run(root: Path, data: Path, track: int = 2, model_class: str | None = None,
             model_over: dict | None = None, seed: int = 0) -> Path:
    """Write RUN_DIR = root with task2/, prediction/ and (tracks 1, 3) task1/; return root."""
    import torch
    from safetensors.numpy import save as save_np
    from safetensors.torch import save_file

    from core.env import fingerprint
    from core.io import sha256_file
    from task2.data import read_item_info
    from core.config import from_dict
    from task2.registry import MODEL_CLASSES, model_args
    from task2.predict import predict
    from task2.train import TrainConfig

    model_class = model_class or ("DIN" if track == 1 else "SASRecDCN")
    item_info = data / DATASET_DIR / "item_info.parquet"
    if track in (1, 3):
        t1 = root / "task1"
        item_info = task1_item_info(data, t1 / "item_info.parquet")
        (t1 / "reducer.safetensors").write_bytes(save_np({"pca.mean": np.zeros(4), "pca.components": np.eye(4)}))
        write_json(t1 / "task1.json", {
            "task": "Task 1: multimodal item embeddings", "profile": "reference",
            "config": {"profile": "reference", "reducer": "pca", "dim": 128}, "seed": seed, "seeding": SEEDING,
            "models": TASK1_MODELS, "quality": {"recall@10": 0.1},
            "inputs": {"sha256": {"item_feature.parquet": sha256_file(data / "item_feature.parquet")}}})
    items = read_item_info(item_info)
    cls, cfg_cls = MODEL_CLASSES[model_class]
    over = dict(SMALL_MODEL if model_class == "SASRecDCN" and model_over is None else model_over or {})
    values = dict(over, n_items=items.n_items)
    if model_class == "DIN":
        values["n_tags"] = items.n_tags
    torch.manual_seed(seed)
    cfg = from_dict(cfg_cls, values)
    model = cls(cfg, items.item_emb, items.item_tags) if model_class == "DIN" else cls(cfg, items.item_emb)
    t2 = root / "task2"
    t2.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(t2 / "model.safetensors"))
    args = model_args(model)
    write_json(t2 / "model_args.json", args)
    from task2.train import DIN_BASELINE_TRAIN

    base = dict(DIN_BASELINE_TRAIN) if model_class == "DIN" else {"epochs": 1}  # what harness train records
    train_cfg = TrainConfig(**dict(base, model_class=model_class, model=over, batch_size=2048, seed=seed,
                                   device="cpu"))
    write_json(t2 / "config.json", {"train": dataclasses.asdict(train_cfg), "model_args": args,
                                    "data_dir": str(data), "device": "cpu", "world_size": 1})
    inputs = {"train": data / DATASET_DIR / "train.parquet", "valid": data / DATASET_DIR / "valid.parquet", "item_info": item_info}
    write_json(t2 / "run.json", {
        "seed": seed, "seeding": SEEDING, "env": fingerprint(), "model_class": model_class,
        "inputs": {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in inputs.items()},
        "best_epoch": 1, "best_valid_auc": 0.51234, "epochs_run": 1, "device": "cpu"})
    (t2 / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "valid_auc": 0.51234, "train_loss": 0.7}) + "\n")
    predict(t2, data, root / "prediction", track=track, device="cpu")
    return root


def package(run: Path, out: Path, data: Path | None, **kw) -> Path:
    """`harness package` as a function; fails the test when the package is refused."""
    from harness.package import build_package

    report = build_package(run, out, data=data, **kw)
    assert report.ok, [f.to_dict() for f in report.findings if f.severity == "error"]
    return out


def copy_package(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def resign(pkg: Path, roles: dict[str, str] | None = None) -> None:
    """Re-list every regular file of `pkg` in MANIFEST.json with its current hash and size."""
    from core.io import sha256_file
    from core.package_format import layout_role

    path = pkg / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    old = manifest["files"]
    files = {}
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(pkg).as_posix()
        if rel == "MANIFEST.json" or p.is_symlink() or not p.is_file():
            continue
        role = (roles or {}).get(rel) or old.get(rel, {}).get("role") or layout_role(rel)
        files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size, "role": role}
    manifest["files"] = files
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def edit_manifest(pkg: Path, fn) -> None:
    path = pkg / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def repredict(pkg: Path, fn) -> None:
    """Replace prediction.csv by fn(frame) and make the zip, predict.json and manifest agree with it."""
    from core.io import sha256_bytes
    from task2.predict import zip_bytes

    frame = fn(pl.read_csv(pkg / "prediction.csv"))
    csv = frame.write_csv().encode("utf-8")
    packed = zip_bytes("prediction.csv", csv)
    (pkg / "prediction.csv").write_bytes(csv)
    (pkg / "prediction.zip").write_bytes(packed)
    edit_json(pkg / "outputs/prediction/predict.json", lambda d: d.update(
        outputs={"prediction.csv": sha256_bytes(csv), "prediction.zip": sha256_bytes(packed)}, rows=frame.height))
    resign(pkg)


def rule_findings(pkg: Path, rule_id: str, data: Path | None = None, track: int | None = None, rerun=None):
    """Findings of one rule on a package (static unless `rerun` results are given)."""
    from referee.rules import run_rules
    from referee.inspection.context import PackageContext

    ctx = PackageContext(pkg, track=track, data=data, rerun=rerun)
    findings, status = run_rules(ctx, only=[rule_id])
    return [f for f in findings if f.id == rule_id], status.get(rule_id)


def errors_of(findings) -> list[str]:
    return [f"{f.path}: {f.message}" for f in findings if f.severity == "error"]
