"""One call that makes a run repeatable: seeds and deterministic flags, recorded as they were set.

PyTorch's reproducibility notes list what it takes; FuxiCTR's seeding set only cudnn.deterministic and
set PYTHONHASHSEED inside the running process, where it has no effect. Here:

- Python, NumPy and torch (CPU and every CUDA device) are seeded;
- `torch.use_deterministic_algorithms(True)`, cudnn.benchmark off, cudnn.deterministic on, TF32 off;
- `CUBLAS_WORKSPACE_CONFIG` is set before CUDA initialises (a warning is recorded if it was too late);
- `PYTHONHASHSEED` can only be set before the interpreter starts: `reproduce.sh` exports it, and
  `seed_everything` records whether it is set and equal to the seed.
"""

from __future__ import annotations

import os
import random

import numpy as np

CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int, deterministic: bool = True) -> dict:
    """Seed every generator and set the deterministic flags; return what was set, for the run record.

    Args:
        seed: the run's seed.
        deterministic: turn on deterministic algorithms and turn off cudnn autotuning and TF32.

    Returns:
        A JSON-ready dict: seed, the flags as torch reports them after setting, PYTHONHASHSEED status.
    """
    import torch

    notes = []
    cuda_ready = torch.cuda.is_available() and torch.cuda.is_initialized()
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        if cuda_ready:
            notes.append("CUBLAS_WORKSPACE_CONFIG was set after CUDA initialised; export it before Python starts")

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    hashseed = os.environ.get("PYTHONHASHSEED")
    if hashseed is None:
        notes.append("PYTHONHASHSEED is not set: export it before Python starts (reproduce.sh does)")
    return {
        "seed": int(seed),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "pythonhashseed": hashseed,
        "notes": notes,
    }


def torch_generator(seed: int):
    """A seeded `torch.Generator` for shuffling and DataLoaders (never the global generator)."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: derive NumPy's and Python's seeds from torch's per-worker seed."""
    import torch

    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)
