"""Task 2 fixtures: a small slice of the tiny dataset and a fast model config for training tests.

`tiny_data` (tests/conftest.py) is generated once per session (per xdist worker). `mini_data` keeps its
valid, test and item_info but only the first MINI_TRAIN_ROWS training rows, so that training tests
that only check mechanics (determinism, reload, DDP) take a second or two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from task2_fixtures import FAST_TRAIN, MINI_TRAIN_ROWS


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread per test process: pytest -n 2 on 2 cores, and no OpenMP oversubscription
    (two spinning threads per process on a busy machine made epochs 5x slower than one thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mini_data(tiny_data, tmp_path_factory) -> Path:
    """tiny with the train split cut to MINI_TRAIN_ROWS rows (read-only: copy before changing it)."""
    root = tmp_path_factory.mktemp("mini") / "data"
    shutil.copytree(tiny_data, root, ignore=shutil.ignore_patterns("item_images"))
    train = root / "MicroLens_1M_x1" / "train.parquet"
    pl.read_parquet(train).head(MINI_TRAIN_ROWS).write_parquet(train)
    return root


@pytest.fixture
def fast_config(tmp_path) -> Path:
    """A config file with the fast model; tests may read and extend it."""
    path = tmp_path / "fast.json"
    path.write_text(json.dumps(FAST_TRAIN))
    return path


@pytest.fixture(scope="session")
def mini_run(mini_data, tmp_path_factory) -> Path:
    """One trained fast run on mini_data (seed 0), shared by read-only tests."""
    from task2.train import load_train_config, train

    out = tmp_path_factory.mktemp("runs") / "mini"
    train(mini_data, out, load_train_config(None, **FAST_TRAIN), log=lambda m: None, progress=False)
    return out
