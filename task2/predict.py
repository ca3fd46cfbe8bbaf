"""Prediction: a run folder + the test split -> prediction.csv, prediction.zip, predict.json.

`predict(run_dir, data_dir, out_dir, track)`:
- rebuilds the model from RUN_DIR/model_args.json and loads RUN_DIR/model.safetensors (safetensors
  only, `load_state_dict(strict=True)`); the checkpoint holds the frozen item table, so item_info is
  not read again;
- scores MicroLens_1M_x1/test.parquet in file order (sigmoid probabilities, float32);
- writes OUT_DIR/prediction.csv with columns `ID` and `Task1` / `Task2` / `Task1&2` for track 1 / 2 /
  3, validated by `core.schemas.validate_prediction` against the test IDs before it is written;
- writes OUT_DIR/prediction.zip (prediction.csv at the root, fixed timestamp and attributes: equal CSV
  bytes give equal zip bytes) and OUT_DIR/predict.json (track, row count, sha256 of inputs/outputs).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import polars as pl
import torch
from torch import nn

from core.challenge import TRACK_COLUMNS
from core.errors import UserError
from core.io import sha256_bytes, sha256_file, write_bytes_atomic, write_json_atomic
from task2.data import Split, gather, batch_order, read_split, split_path
from task2.registry import build_model, upgrade_model_args

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@torch.inference_mode()
def score_split(model: nn.Module, split: Split, batch_size: int = 1024, length_aware: bool = True,
                amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Logits (N,) float32 on the CPU, in the split's row order.

    Rows are scored in order of history length when `length_aware` (less padding), then put back.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    max_len = model.cfg.max_len
    out = torch.empty(len(split), dtype=torch.float32)
    for rows in batch_order(len(split), batch_size, split.lengths, shuffle=False, generator=None,
                            length_aware=length_aware):
        b = gather(split, rows, max_len, trim=length_aware)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            logits = model(b["item_seq"], b["item_id"], b["likes_level"], b["views_level"])
        out[rows.cpu()] = logits.float().cpu()
    model.train(was_training)
    return out


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a run folder from model_args.json + model.safetensors (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    args_path, weights_path = run_dir / "model_args.json", run_dir / "model.safetensors"
    for p in (args_path, weights_path):
        if not p.is_file():
            raise UserError("not found; pass a run folder written by `train`", path=p)
    try:
        args = upgrade_model_args(json.loads(args_path.read_text()))
        model = build_model(args)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise UserError(f"cannot rebuild the model: {e}", path=args_path) from e
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"cannot read the checkpoint ({e}); re-run train", path=weights_path) from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"checkpoint does not match model_args.json: {first[1] if len(first) > 1 else first[0]}",
                        path=weights_path) from e
    return model.to(device).eval()


def zip_bytes(name: str, data: bytes) -> bytes:
    """A zip holding one file at its root, with a fixed timestamp: equal data give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        info.create_system = 3
        zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def predict(run_dir: str | Path, data_dir: str | Path, out_dir: str | Path, track: int = 2,
            device: str = "cpu", batch_size: int = 1024) -> dict:
    """Write OUT_DIR/prediction.csv, prediction.zip and predict.json; return predict.json's content."""
    from core.schemas import validate_prediction

    t0 = time.perf_counter()
    if track not in TRACK_COLUMNS:
        raise UserError(f"track must be 1, 2 or 3, got {track}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model = load_run(run_dir, device)
    args = json.loads((run_dir / "model_args.json").read_text())
    if track == 1 and args["model_class"] != "DIN":
        raise UserError(f"track 1 scores the fixed DIN baseline, but this run trained {args['model_class']}; "
                        "train with --model DIN for track 1", path=run_dir)
    test_path = split_path(data_dir, "test")
    test = read_split(test_path, n_items=model.cfg.n_items, labelled=False).to(device)
    t_load = time.perf_counter() - t0

    t1 = time.perf_counter()
    scores = torch.sigmoid(score_split(model, test, batch_size=batch_size)).numpy()
    t_score = time.perf_counter() - t1

    column = TRACK_COLUMNS[track]
    frame = pl.DataFrame({"ID": test.ids.cpu().numpy(), column: scores.astype("float64")})
    errors = [f for f in validate_prediction(frame, test_ids=test.ids.cpu().numpy(),
                                                      path=str(out_dir / "prediction.csv")) if f.severity == "error"]
    if errors:  # e.g. IDs out of order in the test file, or non-finite scores from a diverged run
        raise UserError(f"the prediction fails the submission schema: {errors[0].message}", path=test_path)
    csv = frame.write_csv().encode("utf-8")
    packed = zip_bytes("prediction.csv", csv)
    write_bytes_atomic(out_dir / "prediction.csv", csv)
    write_bytes_atomic(out_dir / "prediction.zip", packed)
    doc = {
        "track": track,
        "column": column,
        "rows": int(frame.height),
        "model_class": args["model_class"],
        "device": str(torch.device(device)),
        "inputs": {
            "model.safetensors": sha256_file(run_dir / "model.safetensors"),
            "model_args.json": sha256_file(run_dir / "model_args.json"),
            "test.parquet": sha256_file(test_path),
        },
        "outputs": {"prediction.csv": sha256_bytes(csv), "prediction.zip": sha256_bytes(packed)},
        "timings_s": {"load": round(t_load, 3), "score": round(t_score, 3),
                      "total": round(time.perf_counter() - t0, 3)},
        "samples_per_s": round(len(test) / max(t_score, 1e-9), 1),
    }
    write_json_atomic(out_dir / "predict.json", doc)
    return doc
