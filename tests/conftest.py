"""Shared fixtures: one generated `tiny` dataset per test session (seconds to make), copied when mutated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A read-only `tiny` MicroLens-shaped dataset (seed 0). Copy it before changing anything."""
    from harness.synth import generate

    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate(root, scale="tiny", seed=0)
    return root


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may break."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


@pytest.fixture
def harness_cli(capsys):
    """Run the `harness` CLI in-process: returns (exit code, stdout, stderr)."""
    from harness.cli import main

    def run(*args: str):
        capsys.readouterr()
        try:
            main(list(map(str, args)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            code = 0
        out, err = capsys.readouterr()
        return code, out, err

    return run
