"""The Task 2 model classes by name, and their rebuilding from model_args.json.

    MODEL_CLASSES       name -> (model class, config dataclass): SASRecDCN (the default), DIN (Track 1's
                        fixed baseline), MeanPoolMLP (the plain baseline)
    model_args(model)   the JSON written beside a checkpoint: {"model_class", "config"}
    build_model(args)   rebuild the model from that JSON (buffers zero until the checkpoint fills them)

The referee rebuilds the declared class through this module: with its own identical task2 for static
checks, with the package's own code in a re-run (packages of the earlier release kept these in
task2/model.py, and the re-run looks there when this module is absent).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from core.config import from_dict
from task2.din import DIN, DINConfig
from task2.model import SASRecDCN, SASRecDCNConfig
from task2.plain import MeanPoolMLP, MeanPoolMLPConfig

MODEL_CLASSES: dict[str, tuple[type[nn.Module], type]] = {
    "SASRecDCN": (SASRecDCN, SASRecDCNConfig),
    "DIN": (DIN, DINConfig),
    "MeanPoolMLP": (MeanPoolMLP, MeanPoolMLPConfig),
}


def model_args(model: nn.Module) -> dict:
    """The JSON written beside a checkpoint: {"model_class": name, "config": dataclass fields}."""
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name}")
    cfg = dataclasses.asdict(model.cfg)
    return {"model_class": name, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}


def upgrade_model_args(args: dict) -> dict:
    """model_args.json as an earlier release wrote it -> as this one reads it. Before `item_emb_norm` existed
    SASRecDCN and MeanPoolMLP read item_emb_d128 raw: a config without the key means "none" (a config
    given to `train` without it gets the current default, "global")."""
    if (isinstance(args, dict) and args.get("model_class") in ("SASRecDCN", "MeanPoolMLP")
            and isinstance(args.get("config"), dict) and "item_emb_norm" not in args["config"]):
        return dict(args, config=dict(args["config"], item_emb_norm="none"))
    return args


def build_model(args: dict, item_emb: torch.Tensor | None = None, item_tags: torch.Tensor | None = None) -> nn.Module:
    """Rebuild a model from model_args.json's content; its buffers are zeros unless tables are given.

    Raises ValueError on an unknown class or config key (callers name the file).
    """
    if not isinstance(args, dict) or "model_class" not in args or "config" not in args:
        raise ValueError('model args must be {"model_class": ..., "config": {...}}')
    name = args["model_class"]
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model_class {name!r}; known: {sorted(MODEL_CLASSES)}")
    cls, cfg_cls = MODEL_CLASSES[name]
    cfg = from_dict(cfg_cls, args["config"])
    if cls is DIN:
        return DIN(cfg, item_emb, item_tags)
    return cls(cfg, item_emb)
