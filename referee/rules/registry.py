"""The rule registry: `@rule(id, description, tracks, mode)` registers a check `fn(ctx) -> list[Finding]`.

A module of rules imports `rule` from here; `referee.rules` imports every such module (which registers
them) and runs them. Kept apart so that the rule modules and the runner do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ALL_TRACKS = (1, 2, 3)
MODES = ("static", "predict", "full")


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    tracks: tuple[int, ...]
    mode: str
    check: Callable

    def applies(self, track: int | None, rerun_mode: str | None) -> bool:
        if self.mode == "predict" and rerun_mode not in ("predict", "full"):
            return False
        if self.mode == "full" and rerun_mode != "full":
            return False
        return track is None and self.tracks == ALL_TRACKS or track in self.tracks


RULES: dict[str, Rule] = {}


def rule(id: str, description: str, tracks: tuple[int, ...] = ALL_TRACKS, mode: str = "static"):
    """Register `fn(ctx) -> list[Finding]` as a rule."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")

    def deco(fn):
        if id in RULES:
            raise ValueError(f"rule {id} registered twice")
        RULES[id] = Rule(id, description, tuple(tracks), mode, fn)
        return fn

    return deco
