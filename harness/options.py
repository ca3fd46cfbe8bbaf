"""The options of a pipeline run (`./reproduce.sh`, `harness preflight`), typed: what the stages and the
preflight read, after `harness.pipeline.resolve_options` has resolved them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """./reproduce.sh's options as the stages use them (`resolve_options`): absolute paths, the default run
    folder and profile, `auto` resolved, the track an int."""

    run_dir: Path
    data: Path | None  # None: generate the dataset into RUN_DIR/data
    scale: str
    world: str
    seed: int
    device: str  # cpu | cuda
    track: int  # 1 | 2 | 3
    hardware: str
    profile: str  # offline | reference
    image_model: str | None
    text_model: str | None
    image_model_license: str | None
    text_model_license: str | None
    reducer: str | None
    epochs: int | None
    strict: bool
    force: bool
    nproc: int = 1  # Task 2's training processes (torchrun) when more than one
