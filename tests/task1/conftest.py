"""Fixtures for Task 1 tests: the tiny generated dataset, tiny random models, a fast config.

Everything runs offline (HF_HUB_OFFLINE=1) on one CPU thread per test process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from task1_testkit import build_tiny_clip, build_tiny_e5

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _torch_state():
    """One thread per test process, and the deterministic flag that embed sets restored afterwards."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


@pytest.fixture(scope="session")
def synth_tiny(tiny_data) -> Path:
    """The session's `harness synth --scale tiny --seed 0` (tests/conftest.py): 400 items, 64-px covers,
    16,000 train rows. Read-only: use `data_copy` to change anything."""
    return tiny_data


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("models")
    return {"clip": str(build_tiny_clip(root / "tiny-clip")), "e5": str(build_tiny_e5(root / "tiny-e5"))}


@pytest.fixture
def data_copy(synth_tiny, tmp_path):
    """A private copy of the tiny dataset that a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(synth_tiny, dst)
    return dst


@pytest.fixture
def tiny_cfg(tiny_models):
    """The reference profile's code paths with the tiny models, small chunks and quick settings."""
    from task1.config import make_config

    def make(**overrides):
        base = {"image_model": tiny_models["clip"], "text_model": tiny_models["e5"], "image_workers": 0,
                "chunk_size": 128, "quality": {"eval_users": 400},
                "contrastive": {"epochs": 3, "batch_size": 256, "hidden": 32}}
        base.update(overrides)
        return make_config("reference", base)

    return make
