"""The environment fingerprint: Python, package versions, torch/CUDA/cuDNN, GPU, git state."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "torch", "numpy", "polars", "pyarrow", "pandera", "transformers", "tokenizers", "safetensors",
    "scikit-learn", "pillow", "click",
)


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: str | Path | None = None) -> dict:
    root = Path(root or Path(__file__).resolve().parent.parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty if commit else None}


def fingerprint() -> dict:
    """What a re-run needs to know about the machine; JSON-ready."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "num_threads": torch.get_num_threads(),
        },
        "git": git_state(),
    }


def resolve_device(name: str, local_rank: int | None = None):
    """`auto`, `cpu`, `cuda` or `cuda:N` -> a torch.device; `cuda` with `local_rank` is that rank's GPU.

    Raises UserError for a CUDA device torch cannot see and for any other name (one line, what to pass).
    """
    import re

    import torch

    from core.errors import UserError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or re.fullmatch(r"cuda:\d+", name):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}, but torch {torch.__version__} sees no CUDA device; use --device cpu")
        if ":" in name:
            if int(name.split(":")[1]) >= torch.cuda.device_count():
                raise UserError(f"--device {name}, but torch sees {torch.cuda.device_count()} CUDA device(s)")
            return torch.device(name)
        return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
    raise UserError(f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N")
