"""Task 1 test kit: tiny random CLIP and XLM-R (E5-shaped) models, built from configs and saved like hub folders.

The builders live in task1/tiny_models.py (bench/bench_task1.py uses them too); they are re-exported here
so the tests import them from one place. Nothing here touches the network.
"""

from __future__ import annotations

from task1.tiny_models import WORDS, build_tiny_clip, build_tiny_e5, tiny_xlmr_tokenizer

__all__ = ["WORDS", "build_tiny_clip", "build_tiny_e5", "quiet", "tiny_xlmr_tokenizer"]


def quiet(msg: str) -> None:
    """A `log` for task1.pipeline.run that keeps test output clean."""
