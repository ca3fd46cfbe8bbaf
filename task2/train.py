"""Training, top to bottom: config, data, model, optimizer, loop (train, evaluate, decay, stop), checkpoint.

`train(data_dir, out_dir, config)` trains one model and writes the run folder:

    RUN_DIR/model.safetensors     best epoch's state_dict, flat name -> tensor (frozen tables included)
    RUN_DIR/model_args.json       {"model_class": ..., "config": {...}}: rebuilds the model (build_model)
    RUN_DIR/config.json           the full run config (TrainConfig, resolved model config, inputs)
    RUN_DIR/metrics.jsonl         one line per epoch: train/valid loss, valid AUC, lr, seconds, samples/s
    RUN_DIR/training_curves.png   losses and valid AUC per epoch
    RUN_DIR/run.json              seed, seeding flags, environment fingerprint, input sha256, best epoch,
                                  best valid AUC, timings

Every file is written atomically. The run is seeded with `core.seeding.seed_everything`; on the CPU
two runs with the same seed and thread count give bit-identical model.safetensors.

Loss: BCE with logits on the label, plus the model's auxiliary loss (SASRecDCN's next-item loss) and
regulariser (DIN's L2 terms). Schedule: AdamW at `learning_rate`, multiplied by `lr_epoch_decay` after
every epoch. Valid AUC is measured after every epoch and the best epoch's weights are kept; the plateau
rule decides once per *plateau period* (`Plateau`: an epoch, or as many whole epochs as make at least
`plateau_steps` optimizer steps, so that on small data a decision is not read off a few dozen updates):
the lr is multiplied by `lr_decay` after a period without a new best, and training stops after
`early_stop_patience` such periods in a row, or after `epochs`. With `ema_decay` > 0, valid AUC and the
checkpoint read an exponential moving average of the weights instead (off: no gain beyond the seed spread in
tuning round 14, docs/results.md). Models that have `init_output_bias`
start their logit at the training split's click rate. run.json records the best epoch's valid BCE
beside the base rate's, and the valid AUC's standard error (Hanley-McNeil) beside the AUC. Gradients are clipped to `grad_clip`. On CUDA, autocast
in bf16 where the GPU has it natively (compute capability 8.0 or more), else fp16 with a GradScaler
(a T4, 7.5); run.json records the choice (`amp_dtype_for`), and the steps fp16's GradScaler skipped
(overflows) per epoch in metrics.jsonl and in all in run.json. Validation runs in fp32, as prediction does,
so the number that picks the checkpoint is the one that is scored; a non-finite training loss or
validation logit ends the run with one line naming the epoch and what to try (`--no-amp`, a lower lr).

Several processes (torchrun --nproc_per_node N -m task2 train ...): DistributedDataParallel, NCCL on
CUDA and gloo on the CPU. `batch_size` is the *global* (effective) batch: each rank takes an interleaved
share of every global batch and the loss is normalised by the global batch size, so the update is the
single-process one up to floating-point reduction order (BatchNorm statistics and dropout masks are per
rank: buffers are synced once, when DDP is built, never per step; see `wrap_ddp`). Only rank 0
writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from core.challenge import DIN_BASELINE_TRAIN  # Track 1's fixed training (FuxiCTR's), declared once
from core.config import from_dict, read_json_object
from core.env import fingerprint, resolve_device
from core.errors import UserError
from core.io import atomic_path, sha256_file, write_bytes_atomic, write_json_atomic, write_text_atomic
from core.metrics import auc as roc_auc
from core.seeding import seed_everything, torch_generator
from task2.data import ItemInfo, Split, iterate_batches, read_item_info, read_split, split_path
from task2.din import fit_din_tunables
from task2.registry import MODEL_CLASSES, build_model, model_args
from task2.predict import score_split


RUN_FILES = ("model.safetensors", "model_args.json", "config.json", "metrics.jsonl", "training_curves.png",
             "run.json")


@dataclass
class TrainConfig:
    """Everything a run needs besides the data paths. `model` overrides fields of the model's config
    dataclass (SASRecDCNConfig or DINConfig); n_items and n_tags come from item_info."""

    model_class: str = "SASRecDCN"
    model: dict = field(default_factory=dict)
    epochs: int = 100  # a cap, not a schedule: training stops on its own plateau (early_stop_patience)
    batch_size: int = 512  # global (effective) batch size, over all DDP ranks; the largest, with min_epoch_steps
    min_epoch_steps: int = 50  # > 0: on small data the batch halves (floor 128) until an epoch has this many steps
    eval_batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # AdamW, on matrices and embeddings only
    lr_epoch_decay: float = 1.0  # lr *= this after every epoch (1: none; a per-epoch decay assumes a data size)
    lr_decay: float = 0.5  # lr *= this after an epoch without a new best valid AUC (decay on plateau)
    min_learning_rate: float = 1e-5
    early_stop_patience: int = 2  # plateau periods without a new best valid AUC before stopping
    plateau_steps: int = 300  # a plateau period is an epoch, or as many epochs as make at least this many
    #                         optimizer steps: on small data a decision (decay, stop) reads enough training
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # > 0: valid AUC and the checkpoint read an exponential moving average of the weights,
    #                       updated after every optimizer step with this decay (torch.optim.swa_utils); 0 = off
    length_aware: bool = True  # sort by history length within buckets and trim padding per batch
    bucket_batches: int = 64
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # CUDA only
    deterministic: bool = True  # torch.use_deterministic_algorithms and friends
    fit_to_data: bool = False  # DIN (Track 1): batch_size and learning_rate from the training rows (fit_din_tunables)

    def check(self) -> None:
        if self.model_class not in MODEL_CLASSES:
            raise ValueError(f"model_class must be one of {sorted(MODEL_CLASSES)}, got {self.model_class!r}")
        if not isinstance(self.model, dict):
            raise ValueError("model must be an object of model config fields")
        positive = ("epochs", "batch_size", "eval_batch_size", "bucket_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.learning_rate <= 0 or self.min_learning_rate < 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate and grad_clip must be > 0; min_learning_rate, weight_decay >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if not (0 < self.lr_decay <= 1 and 0 < self.lr_epoch_decay <= 1):
            raise ValueError("lr_decay and lr_epoch_decay must be in (0, 1]")
        if self.fit_to_data and self.model_class != "DIN":
            raise ValueError("fit_to_data is Track 1's rule for DIN's batch_size and learning_rate; set them directly")
        if self.early_stop_patience < 1 or self.plateau_steps < 0 or self.min_epoch_steps < 0:
            raise ValueError("early_stop_patience must be >= 1; plateau_steps and min_epoch_steps >= 0")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


MIN_FITTED_BATCH = 128


def batch_for_steps(n_rows: int, batch_size: int, min_steps: int) -> int:
    """The largest of batch_size, batch_size / 2, ... (not below 128, nor above batch_size) that gives an
    epoch of n_rows at least min_steps steps. At batch 512 an epoch of 15,000 rows is 30 updates, and a
    small dataset's ids then learn on a fraction of the updates a large one's get per epoch."""
    batch = batch_size
    while batch > MIN_FITTED_BATCH and math.ceil(n_rows / batch) < min_steps:
        batch = max(MIN_FITTED_BATCH, batch // 2)
    return batch


def load_train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults, then the JSON file's values, then `overrides` (CLI flags, None = not given).

    With model_class "DIN" the defaults are DIN_BASELINE_TRAIN's. A bad key or value is a UserError
    naming the file.
    """
    values: dict = {} if path is None else read_json_object(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("model_class") == "DIN":
        # batch size and learning rate fitted to the data unless either is given
        fit = "batch_size" not in values and "learning_rate" not in values
        values = {**DIN_BASELINE_TRAIN, "fit_to_data": fit, **values}
    try:
        cfg = from_dict(TrainConfig, values)
        _, model_cfg_cls = MODEL_CLASSES[cfg.model_class]
        from_dict(model_cfg_cls, dict(cfg.model), where="model.")  # check model keys early, before reading data
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(str(e), path=path) from None
    return cfg


def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def amp_dtype_for(device: torch.device, amp: bool = True,
                  capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype of training: None off CUDA (or with amp off); bf16 where the GPU computes it
    natively (compute capability 8.0 or more: A100, L4, H100); fp16, with a GradScaler, below (a T4 is
    7.5). Not torch.cuda.is_bf16_supported(): by default it counts emulated bf16 and says True on a T4.
    `capability` given (the preflight's probe) spares asking this process's CUDA."""
    if not amp or device.type != "cuda":
        return None
    major, _ = capability or torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel without per-step buffer broadcasts. DDP's default (broadcast_buffers=True)
    re-sends every buffer from rank 0 before each forward: the frozen item table (91,718 x 128, 47 MB) and
    id_known never change, and BatchNorm statistics are meant to stay per rank, so that costs bandwidth
    for nothing. `forward_sync_buffers=False` is this torch's name for broadcast_buffers=False (the old
    name is deprecated); buffers are still synced once, when DDP is built."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   forward_sync_buffers=False)


class Plateau:
    """When the schedule decides. Valid AUC is measured after every epoch (and the best epoch's weights are
    kept), but decaying the learning rate and stopping are decided once per *plateau period*: an epoch, or
    as many whole epochs as make at least `min_steps` optimizer steps. On 3.6 M rows every epoch is a
    period; on 17 k rows at batch 512 an epoch is 33 steps, and deciding on each would read the noise of a
    few updates (and of a small validation split) as a plateau.

    `steps` is counted by the loop; `close_epoch(improved)` returns None inside a period, else whether any
    epoch of the period set a new best (and starts the next period)."""

    def __init__(self, min_steps: int):
        self.min_steps = min_steps
        self.steps = 0
        self.improved = False

    def close_epoch(self, improved: bool) -> bool | None:
        self.improved = self.improved or improved
        if self.steps < self.min_steps:
            return None
        decided, self.steps, self.improved = self.improved, 0, False
        return decided


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC from n_pos positives and n_neg negatives: the
    sampling noise of a validation AUC (0.0063 at 0.95 on 600 clicks and 1,800 negatives)."""
    if n_pos < 1 or n_neg < 1 or not 0.0 <= auc <= 1.0:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def bce_of_rate(rate: float, labels: torch.Tensor) -> float:
    """Mean BCE of predicting `rate` for every row: the bar a calibrated model's valid loss must be under."""
    p = min(max(rate, 1e-7), 1 - 1e-7)
    y = labels.double()
    return float(-(y * math.log(p) + (1 - y) * math.log(1 - p)).mean())


def _curves_png(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train")
    ax1.plot(epochs, [r["valid_loss"] for r in rows], marker="o", label="valid")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("BCE loss"), ax1.legend()
    ax2.plot(epochs, [r["valid_auc"] for r in rows], marker="o", color="C2")
    ax2.set_xlabel("epoch"), ax2.set_ylabel("valid AUC")
    for ax in (ax1, ax2):
        ax.set_xticks(epochs)  # whole epochs only
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _save_checkpoint(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state))


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW at cfg.learning_rate; cfg.weight_decay on matrices and embeddings only (0 by default, and
    AdamW with no weight decay is Adam: DIN's baseline optimizer)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)


def train_step(model: torch.nn.Module, raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
               grad_clip: float, *, world: int = 1, scaler: torch.amp.GradScaler | None = None,
               amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One update on `batch` (an `iterate_batches` dict); returns the batch's summed BCE, its auxiliary loss
    and whether fp16's GradScaler skipped the step (an overflow: the scale dropped; always False without it).

    Loss = BCE with logits, normalised by the global batch size (the mean in one process), + the model's
    auxiliary loss + its regulariser; gradients clipped to `grad_clip` in norm over all parameters; one
    optimizer step. `model` is what runs forward (DDP-wrapped with several processes), `raw_model` the
    module itself. On CUDA, autocast in `amp_dtype` with `scaler` (fp16's GradScaler) when given.
    """
    device_type = batch["label"].device.type
    with torch.autocast(device_type=device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits, aux = model(batch["item_seq"], batch["item_id"], batch["likes_level"], batch["views_level"],
                            with_aux=True, clicks=batch["label"])
    bce = F.binary_cross_entropy_with_logits(logits.float(), batch["label"], reduction="sum")
    loss = bce * (world / batch["global_size"]) + aux.float() + raw_model.regularization_loss()
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)  # disabled: plain backward and step
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    skipped = scale is not None and scaler.get_scale() < scale
    return bce.detach(), aux.detach().float(), skipped


# ---------------------------------------------------------------------------------------------
# The run, top to bottom: processes, data, batch, model, loop (train an epoch, evaluate, decide), record


@dataclass
class Processes:
    """This process's place in the run: torchrun's rank among `world` processes, its device, and the
    autocast dtype of training there (None off CUDA)."""

    rank: int
    local_rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0  # rank 0 writes the run folder and its numbers decide


def start_processes(cfg: TrainConfig) -> Processes:
    """One process, or torchrun's: its rank, its device, the process group (NCCL on CUDA, gloo on the CPU)."""
    rank, local_rank, world = _dist_info()
    device = resolve_device(cfg.device, local_rank)  # core.env
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, local_rank, world, device, amp_dtype_for(device, cfg.amp))


@dataclass
class RunData:
    """The item table and the two labelled splits, on the run's device, and the files they came from."""

    items: ItemInfo
    train: Split
    valid: Split
    paths: dict[str, Path]  # train, valid, item_info


def load_data(data_dir: str | Path, item_info: str | Path | None, cfg: TrainConfig, device: torch.device) -> RunData:
    _, model_cfg_cls = MODEL_CLASSES[cfg.model_class]
    emb_dim = cfg.model.get("item_emb_dim", model_cfg_cls().item_emb_dim)
    paths = {"train": split_path(data_dir, "train"), "valid": split_path(data_dir, "valid"),
             "item_info": Path(item_info) if item_info is not None else split_path(data_dir, "item_info")}
    items = read_item_info(paths["item_info"], emb_dim=emb_dim)
    train_split = read_split(paths["train"], n_items=items.n_items).to(device)
    valid_split = read_split(paths["valid"], n_items=items.n_items).to(device)
    return RunData(items, train_split, valid_split, paths)


def fit_batch(cfg: TrainConfig, n_rows: int, log: Callable[[str], None]) -> tuple[TrainConfig, dict | None]:
    """The batch (and, for Track 1's DIN, the learning rate) the data's size calls for; (config, what was
    fitted and why, or None)."""
    if cfg.fit_to_data:
        fitted = fit_din_tunables(n_rows)
        log(f"batch_size {fitted['batch_size']}, learning_rate {fitted['learning_rate']:g} fitted to {n_rows:,} "
            f"training rows (official {fitted['official']['batch_size']}, {fitted['official']['learning_rate']:g})")
        return dataclasses.replace(cfg, batch_size=fitted["batch_size"], learning_rate=fitted["learning_rate"]), fitted
    batch = batch_for_steps(n_rows, cfg.batch_size, cfg.min_epoch_steps) if cfg.min_epoch_steps else cfg.batch_size
    if batch == cfg.batch_size:
        return cfg, None
    log(f"batch_size {batch} (of at most {cfg.batch_size}): {n_rows:,} training rows make "
        f"{math.ceil(n_rows / batch)} steps an epoch (min_epoch_steps {cfg.min_epoch_steps})")
    return dataclasses.replace(cfg, batch_size=batch), {
        "train_rows": n_rows, "batch_size": batch, "largest_batch_size": cfg.batch_size,
        "rule": f"batch halves from {cfg.batch_size} until an epoch has >= {cfg.min_epoch_steps} steps "
                f"(floor {MIN_FITTED_BATCH})"}


def build(cfg: TrainConfig, data: RunData, proc: Processes) -> tuple[torch.nn.Module, torch.nn.Module, dict, float]:
    """The model from its config and the data's tables -> (what runs forward (DDP-wrapped with several
    processes), the module itself, model_args, the training click rate). The sizes of the tables come from
    item_info; a config that names others is refused."""
    _, model_cfg_cls = MODEL_CLASSES[cfg.model_class]
    values, items, path = dict(cfg.model), data.items, data.paths["item_info"]
    if values.setdefault("n_items", items.n_items) != items.n_items:
        raise UserError(f"model.n_items = {values['n_items']} but item_info has {items.n_items} rows; "
                        "drop n_items from the config", path=path)
    tag_sized = "n_tags" in {f.name for f in dataclasses.fields(model_cfg_cls)}  # DIN embeds item_tags
    if tag_sized and values.setdefault("n_tags", items.n_tags) < items.n_tags:
        raise UserError(f"item_tags holds tag id {items.n_tags - 1}, beyond model.n_tags = {values['n_tags']}; "
                        "drop n_tags from the config", path=path)
    model = build_model({"model_class": cfg.model_class, "config": values}, items.item_emb,
                        items.item_tags).to(proc.device)
    if hasattr(model, "set_known_items"):  # cold start: items absent from train share one id vector
        model.set_known_items(data.train.item_id, data.train.item_seq)
    base_rate = float(data.train.label.double().mean())
    if hasattr(model, "init_output_bias"):  # start at the base rate: the first epoch's BCE starts at its level
        model.init_output_bias(base_rate)
    args = model_args(model)
    torch.manual_seed(cfg.seed + proc.rank)  # dropout streams: rank 0 matches a single-process run
    return (wrap_ddp(model, proc.device) if proc.world > 1 else model), model, args, base_rate


def train_epoch(model: torch.nn.Module, raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, generator: torch.Generator, split: Split, cfg: TrainConfig,
                proc: Processes, desc: str, progress: bool | None,
                ema: AveragedModel | None = None) -> tuple[float, float, int, int, int, float]:
    """One pass over the training split -> (mean BCE, mean auxiliary loss, rows, steps, steps fp16 skipped,
    seconds), summed over the processes. `ema`, when given, is updated after every step."""
    from tqdm import tqdm

    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=proc.device)
    aux_sum = torch.zeros((), dtype=torch.float64, device=proc.device)
    seen = steps = skipped = 0
    # progress=None: a bar on rank 0 when stderr is a terminal (tqdm's disable=None)
    bar = tqdm(total=math.ceil(len(split) / cfg.batch_size), desc=desc, file=sys.stderr, leave=False,
               disable=(None if proc.is_main else True) if progress is None else not (progress and proc.is_main))
    for batch in iterate_batches(split, cfg.batch_size, max_len=raw_model.cfg.max_len, shuffle=True,
                                 generator=generator, length_aware=cfg.length_aware,
                                 bucket_batches=cfg.bucket_batches, rank=proc.rank, world_size=proc.world):
        bce, aux, was_skipped = train_step(model, raw_model, optimizer, batch, cfg.grad_clip, world=proc.world,
                                           scaler=scaler, amp_dtype=proc.amp_dtype)
        if ema is not None:
            ema.update_parameters(raw_model)
        skipped += int(was_skipped)
        loss_sum += bce.double()
        aux_sum += aux.double() * len(batch["rows"])
        seen += len(batch["rows"])
        steps += 1
        bar.update(1)
    bar.close()
    if proc.world > 1:
        totals = torch.stack([loss_sum, aux_sum, torch.tensor(float(seen), dtype=torch.float64, device=proc.device)])
        dist.all_reduce(totals)
        loss_sum, aux_sum, seen = totals[0], totals[1], int(totals[2].item())
    return (float(loss_sum) / max(seen, 1), float(aux_sum) / max(seen, 1), seen, steps, skipped,
            time.perf_counter() - t0)


def evaluate(raw_model: torch.nn.Module, split: Split, cfg: TrainConfig, proc: Processes,
             epoch: int = 0) -> tuple[float, float, float]:
    """Valid BCE and AUC of the current weights -> (loss, AUC, seconds), in fp32 as prediction runs (the
    number that chooses the checkpoint is the one that is scored). Every process holds the same weights;
    rank 0's numbers are the ones every process acts on. A non-finite logit is a UserError."""
    t0 = time.perf_counter()
    logits = score_split(raw_model, split, cfg.eval_batch_size, cfg.length_aware, None)
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        raise UserError(f"epoch {epoch}: {bad:,} validation logit(s) are not finite (NaN or inf): the weights "
                        "diverged" + _what_to_try(proc))
    labels = split.label.cpu()
    loss = float(F.binary_cross_entropy_with_logits(logits, labels))
    auc = roc_auc(labels.numpy(), logits.numpy())
    if proc.world > 1:
        shared = torch.tensor([auc, loss], dtype=torch.float64, device=proc.device)
        dist.broadcast(shared, src=0)
        auc, loss = float(shared[0]), float(shared[1])
    return loss, auc, time.perf_counter() - t0


def _what_to_try(proc: Processes) -> str:
    fp16 = proc.amp_dtype == torch.float16
    return ("; try --no-amp (fp16 overflowed?) or a lower learning rate (--lr)" if fp16
            else "; try a lower learning rate (--lr) or a smaller grad_clip")


def train(data_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None,
          item_info: str | Path | None = None, log: Callable[[str], None] = _stderr,
          progress: bool | None = None) -> dict:
    """Train one model; write the run folder (see the module docstring); return run.json's content."""
    cfg = config or TrainConfig()
    cfg.check()
    t_start = time.perf_counter()
    out_dir = Path(out_dir)

    seeding = seed_everything(cfg.seed, deterministic=cfg.deterministic)  # before CUDA initialises
    proc = start_processes(cfg)
    data = load_data(data_dir, item_info, cfg, proc.device)
    cfg, fitted = fit_batch(cfg, len(data.train), log)
    t_loaded = time.perf_counter()
    log(f"data: {len(data.train):,} train, {len(data.valid):,} valid rows, {data.items.n_items:,} items "
        f"({t_loaded - t_start:.1f} s)")

    model, raw_model, args, base_rate = build(cfg, data, proc)
    optimizer = make_optimizer(raw_model, cfg)
    # the averaged weights are what valid AUC reads and the checkpoint keeps; buffers (frozen tables, masks)
    # are copied, not averaged: nothing in training changes them
    ema = (AveragedModel(raw_model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)
           if cfg.ema_decay > 0 else None)
    scored = raw_model if ema is None else ema.module
    scaler = torch.amp.GradScaler("cuda", enabled=proc.amp_dtype == torch.float16)
    generator = torch_generator(cfg.seed)
    full_config = {
        "train": dataclasses.asdict(cfg), "model_args": args, "data_dir": str(data_dir),
        "inputs": {k: str(v) for k, v in data.paths.items()}, "device": str(proc.device), "world_size": proc.world,
        "effective_batch_size": cfg.batch_size, "per_rank_batch_size": math.ceil(cfg.batch_size / proc.world),
        "amp_dtype": None if proc.amp_dtype is None else str(proc.amp_dtype).replace("torch.", ""),
        "fitted_to_data": fitted,
    }
    if proc.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in RUN_FILES:  # an overwritten run folder must not mix two runs
            (out_dir / stale).unlink(missing_ok=True)
        write_json_atomic(out_dir / "config.json", full_config)
        write_json_atomic(out_dir / "model_args.json", args)

    # the loop: train an epoch, evaluate, keep the best epoch's weights; decide (decay, stop) per plateau period
    lr = cfg.learning_rate
    rows: list[dict] = []
    best_auc, best_epoch, since_best = -1.0, 0, 0
    period = Plateau(cfg.plateau_steps)
    train_seconds, samples_total, skipped_total = 0.0, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss, aux_loss, seen, steps, skipped, epoch_s = train_epoch(
            model, raw_model, optimizer, scaler, generator, data.train, cfg, proc, f"epoch {epoch}", progress, ema)
        if not math.isfinite(train_loss):
            raise UserError(f"epoch {epoch}: the training loss is not finite ({train_loss}): the weights diverged"
                            + _what_to_try(proc))
        skipped_total += skipped
        period.steps += steps
        train_seconds += epoch_s
        samples_total += seen
        valid_loss, valid_auc, eval_s = evaluate(scored, data.valid, cfg, proc, epoch)

        improved = valid_auc > best_auc
        if improved:
            best_auc, best_epoch = valid_auc, epoch
            if proc.is_main:
                _save_checkpoint(out_dir / "model.safetensors", scored)
        decided = period.close_epoch(improved)  # None inside a period; else whether it held a new best
        if decided is not None:
            since_best = 0 if decided else since_best + 1
        row = {
            "epoch": epoch, "train_loss": train_loss, "train_aux_loss": aux_loss, "valid_loss": valid_loss,
            "valid_auc": valid_auc, "lr": lr, "epoch_s": round(epoch_s, 3), "eval_s": round(eval_s, 3),
            "samples_per_s": round(seen / max(epoch_s, 1e-9), 1), "best": improved,
            "plateau_decision": decided is not None, "amp_skipped_steps": skipped,
        }
        rows.append(row)
        if proc.is_main:
            write_text_atomic(out_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            log(f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, "
                f"valid AUC {valid_auc:.4f}{' *' if improved else ''}, lr {lr:.2e}, {epoch_s:.1f} s, "
                f"{row['samples_per_s']:,.0f} samples/s")
        if since_best >= cfg.early_stop_patience:
            unit = "epochs" if cfg.plateau_steps == 0 else f"plateau periods (each >= 1 epoch and {cfg.plateau_steps} steps)"
            stop_reason = (f"plateau: no new best valid AUC for {since_best} {unit} (early_stop_patience "
                           f"{cfg.early_stop_patience}); the best was epoch {best_epoch}")
            break
        lr = lr * cfg.lr_epoch_decay * (cfg.lr_decay if decided is False else 1.0)
        lr = max(lr, cfg.min_learning_rate)
    else:
        stop_reason = (f"epoch cap: {cfg.epochs} epochs run, the last "
                       + ("a new best (raise epochs: the model was still improving)" if best_epoch == len(rows)
                          else f"{len(rows) - best_epoch} epoch(s) after the best"))

    valid_labels = data.valid.label.cpu()
    run = {
        "seed": cfg.seed,
        "seeding": seeding,
        "env": fingerprint(),
        "inputs": {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in data.paths.items()},
        "model_class": cfg.model_class,
        "best_epoch": best_epoch,
        "best_valid_auc": best_auc,
        "best_valid_auc_se": round(auc_standard_error(best_auc, int(valid_labels.sum()),
                                                      int(len(valid_labels) - valid_labels.sum())), 6),
        "best_valid_loss": rows[best_epoch - 1]["valid_loss"] if best_epoch else None,
        "base_rate": base_rate,
        "base_rate_valid_loss": bce_of_rate(base_rate, valid_labels),
        "epochs_run": len(rows),
        "stopped_early": len(rows) < cfg.epochs,
        "stop_reason": stop_reason,
        "fitted_to_data": fitted,
        "world_size": proc.world,
        "device": str(proc.device),
        "amp": {"dtype": None if proc.amp_dtype is None else str(proc.amp_dtype).replace("torch.", ""),
                "grad_scaler": scaler.is_enabled(), "skipped_steps": skipped_total,
                "compute_capability": (".".join(map(str, torch.cuda.get_device_capability(proc.device)))
                                       if proc.device.type == "cuda" else None)},
        "train_rows": len(data.train),
        "parameters": {
            "trainable": int(sum(p.numel() for p in raw_model.parameters() if p.requires_grad)),
            "frozen_buffers": int(sum(b.numel() for b in raw_model.buffers())),
        },
        "timings_s": {
            "load": round(t_loaded - t_start, 3),
            "train": round(train_seconds, 3),
            "total": round(time.perf_counter() - t_start, 3),
        },
        "train_samples_per_s": round(samples_total / max(train_seconds, 1e-9), 1),
    }
    if proc.is_main:
        _curves_png(out_dir / "training_curves.png", rows)
        write_json_atomic(out_dir / "run.json", run)
    if proc.world > 1:
        dist.barrier()
    return run
