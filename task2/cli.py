"""`train` and `predict`: thin click commands over task2.train and task2.predict.

Progress and per-epoch lines go to stderr; one summary line goes to stdout at the end. Both commands
run under `harness train|predict` and `python -m task2 train|predict`.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from core.errors import UserError


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("train")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Dataset root holding MicroLens_1M_x1/{train,valid}.parquet.")
@click.option("--item-info", type=click.Path(path_type=Path), default=None,
              help="item_info.parquet to freeze into the model [default: DATA/MicroLens_1M_x1/item_info.parquet].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="JSON file of TrainConfig fields (model fields under \"model\").")
@click.option("--model", "model_class", type=click.Choice(["SASRecDCN", "DIN", "MeanPoolMLP"]), default=None,
              help="Model class [default: SASRecDCN; DIN: Track 1's fixed baseline; MeanPoolMLP: the plain baseline].")
@click.option("--seed", type=int, default=None, help="Seed [default: 0].")
@click.option("--device", type=str, default=None, help="auto, cpu, cuda or cuda:N [default: auto].")
@click.option("--epochs", type=int, default=None, help="Maximum epochs.")
@click.option("--batch-size", type=int, default=None, help="Global batch size (over all DDP ranks).")
@click.option("--lr", "learning_rate", type=float, default=None, help="Initial learning rate.")
@click.option("--no-amp", "no_amp", is_flag=True, help="Train in fp32 on CUDA too (no autocast, no GradScaler).")
@click.option("--overwrite", is_flag=True, help="Write into a run folder that already holds a model.")
def train(data_dir, item_info, out_dir, config_path, model_class, seed, device, epochs, batch_size,
          learning_rate, no_amp, overwrite) -> int:
    """Train the Task 2 CTR model (or the DIN baseline) and write the run folder OUT."""
    from task2.train import load_train_config, train as run_train

    cfg = load_train_config(config_path, model_class=model_class, seed=seed, device=device, epochs=epochs,
                            batch_size=batch_size, learning_rate=learning_rate, amp=False if no_amp else None)
    if (out_dir / "model.safetensors").exists() and not overwrite:
        raise UserError("run folder already holds model.safetensors; choose a new --out or pass --overwrite",
                        path=out_dir)
    run = run_train(data_dir, out_dir, cfg, item_info=item_info, log=_log)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {run['model_class']}: best valid AUC {run['best_valid_auc']:.4f} at epoch "
                   f"{run['best_epoch']}/{run['epochs_run']}, {run['timings_s']['train']:.1f} s training, "
                   f"{run['train_samples_per_s']:,.0f} samples/s -> {out_dir}")
    return 0


@click.command("predict")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder from `train`.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Dataset root holding MicroLens_1M_x1/test.parquet.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for prediction.csv, prediction.zip, predict.json.")
@click.option("--track", type=click.Choice(["1", "2", "3"]), default="2", show_default=True,
              help="Score column: 1 = Task1, 2 = Task2, 3 = Task1&2.")
@click.option("--device", type=str, default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
def predict(run_dir, data_dir, out_dir, track, device) -> int:
    """Score the test split with a trained run; write prediction.csv and prediction.zip."""
    from task2.predict import predict as run_predict
    from core.env import resolve_device

    doc = run_predict(run_dir, data_dir, out_dir, track=int(track), device=resolve_device(device, 0))
    click.echo(f"wrote {out_dir / 'prediction.csv'} ({doc['rows']:,} rows, column {doc['column']}) and "
               f"prediction.zip in {doc['timings_s']['total']:.1f} s")
    return 0
