"""The competition's rules, and the package's own, as code: a registry of checks over a submission folder.

Each rule has a stable id, a one-line description, the tracks it applies to, the mode it needs
(`static`: reads files only; `predict` / `full`: needs the results of `harness verify --rerun`), and a
check `fn(ctx: PackageContext) -> list[Finding]` whose findings carry the rule's id. Static rules never
import or execute the submission's code and never unpickle anything.

    from referee.rules import run_rules
    from referee.inspection.context import PackageContext
    findings, status = run_rules(PackageContext("submission/", data="data/"))

`harness verify --list-rules` prints the registry.
"""

from __future__ import annotations

from core.errors import Finding, error
from referee.rules.registry import RULES, Rule


def _load() -> None:
    # importing the rule modules registers their rules (idempotent: modules import once)
    # in report order: the package, the prediction and records, the models, the code, the re-run
    import referee.rules.package_rules  # noqa: F401
    import referee.rules.trust_rules  # noqa: F401
    import referee.rules.model_rules  # noqa: F401
    import referee.rules.task1_rules  # noqa: F401
    import referee.rules.code_rules  # noqa: F401
    import referee.rules.rerun_rules  # noqa: F401


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
            from referee.inspection.context import printable

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
