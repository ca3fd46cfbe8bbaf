"""Task 1 test kit: tiny random CLIP and XLM-R (E5-shaped) models, built from configs and saved like hub folders.

The builders live in bench/tiny_models.py (bench/bench_task1.py times models built with them); they are
re-exported here so the tests import them from one place. They are not in task1/: a package would carry
them into every submission. Nothing here touches the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from tiny_models import WORDS, build_tiny_clip, build_tiny_e5, tiny_xlmr_tokenizer  # noqa: E402

__all__ = ["WORDS", "build_tiny_clip", "build_tiny_e5", "quiet", "tiny_xlmr_tokenizer"]


def quiet(msg: str) -> None:
    """A `log` for task1.pipeline.run that keeps test output clean."""
