"""The competition's rules, and the package's own, as code: a registry of checks over a submission folder.

Each rule has a stable id, a one-line description, the tracks it applies to, the mode it needs
(`static`: reads files only; `predict` / `full`: needs the results of `harness verify --rerun`), and a
check `fn(ctx: PackageContext) -> list[Finding]` whose findings carry the rule's id. Static rules never
import or execute the submission's code and never unpickle anything.

    from harness.rules import RULES, run_rules
    from harness.rules.context import PackageContext
    findings, status = run_rules(PackageContext("submission/", data="data/"))

`harness verify --list-rules` prints the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.errors import Finding, error

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


def _load() -> None:
    # importing the rule modules registers their rules (idempotent: modules import once)
    # in report order: the package, the prediction and records, the models, the code, the re-run
    import harness.rules.package_rules  # noqa: F401
    import harness.rules.trust_rules  # noqa: F401
    import harness.rules.model_rules  # noqa: F401
    import harness.rules.task1_rules  # noqa: F401
    import harness.rules.code_rules  # noqa: F401
    import harness.rules.rerun_rules  # noqa: F401


def run_rules(ctx, only: list[str] | None = None) -> tuple[list[Finding], dict[str, str]]:
    """Run every applicable rule; return (findings, {rule id: ok | error | warning | skipped}).

    A rule that raises is reported as an error finding under its id and the other rules still run (a
    verdict must come out on any input; the message says it is an internal error, which is a bug to fix).
    """
    _load()
    rerun_mode = (ctx.rerun or {}).get("mode")
    findings: list[Finding] = []
    status: dict[str, str] = {}
    for r in RULES.values():
        if only is not None and r.id not in only:
            continue
        if not r.applies(ctx.track, rerun_mode):
            status[r.id] = "skipped"
            continue
        try:
            found = list(r.check(ctx))
        except Exception as e:  # noqa: BLE001 - see the docstring (RecursionError and MemoryError included)
            from harness.rules.context import printable

            found = [error(r.id, f"internal error while checking ({type(e).__name__}: {printable(str(e), 200)}); "
                           "please report it")]
        findings += found
        if any(f.severity == "error" for f in found):
            status[r.id] = "error"
        elif found:
            status[r.id] = "warning"
        else:
            status[r.id] = "ok"
    return findings, status


def registry() -> list[Rule]:
    _load()
    return list(RULES.values())
