"""`harness verify DIR`: a mechanical verdict on a submission folder, safe on a stranger's package.

By default nothing of the submission runs: the manifest (every hash, nothing missing, nothing extra),
the layout and the released harness files, the schemas (prediction.csv against the test IDs when --data
is given, item_info) and every static rule of referee.rules are checked from the files alone; no pickle
is ever loaded. Static verify is triage: what it cannot prove is an error. `--rerun predict` and
`--rerun full` then run the package's own code on a temporary copy inside a sandbox (no network, writes
only to a scratch folder, read-only data, scrubbed environment, resource limits; referee.sandbox.plan)
under an audit hook (referee.sandbox.rerun_driver). Where the machine offers no isolation, `--rerun`
refuses unless `--no-sandbox` (for a throwaway container). The re-run is refused when the static safety
checks (PKG-HYGIENE, T2-CHECKPOINT-FORMAT) fail.

On any input the command ends with a verdict, never a traceback: an unexpected exception becomes a
finding (exit 1) and the other rules still run; printed paths and messages are escaped. It never
imports code from the folder it is run in (harness/__main__.py re-executes `python -m harness` from a
submission folder without it on the import path).

Exit codes: 0 everything holds (warnings allowed), 1 findings, 2 usage or I/O problems.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from core.cli import track_option
from core.errors import Finding, UserError, error, exit_code_for

SAFETY_RULES = ("PKG-HYGIENE", "T2-CHECKPOINT-FORMAT")
RERUN_AFFECTED = ("T2-SINGLE-MODEL", "NO-ENSEMBLE-TREE", "RERUN-PREDICT", "RERUN-FULL", "RERUN-SANDBOX")
INTERNAL = "VERIFY"  # the id of a finding for an unexpected exception outside any rule


@dataclass
class VerifyReport:
    root: str
    track: int | None
    mode: str
    findings: list[Finding] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    rerun: dict | None = None  # what the re-run measured (referee.rerun), for the summary and tests

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.findings)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "exit_code": self.exit_code, "findings": [f.to_dict() for f in self.findings]}


def internal_finding(e: BaseException, where: str) -> Finding:
    from referee.inspection.context import printable

    return error(INTERNAL, f"internal error while {where} ({type(e).__name__}: {printable(str(e), 200)}); the "
                 "verdict is FAIL; please report it", ".")


def verify_package(root, data=None, track: int | None = None, rerun: str | None = None, device: str = "cpu",
                   timeout: float = 3600.0, auc_tolerance: float | None = None, min_spearman: float | None = None,
                   log=None, sandbox: bool = True, hide=(), keep_prediction=None,
                   expected_state: dict | None = None, rerun_only_if_clean: bool = False) -> VerifyReport:
    """Check a submission folder; see the module docstring. Raises UserError for usage and I/O problems.

    `sandbox=False` runs `--rerun` without isolation; `hide` lists paths the re-run's sandbox covers (the
    ground truth, other packages); `keep_prediction` receives the re-computed prediction.csv;
    `expected_state` is the declared class's layout from code the caller trusts (`harness package`);
    `rerun_only_if_clean` skips the re-run when a static rule already failed (harness audit).
    """
    from referee.inspection.context import PackageContext
    from referee.rerun import AUC_TOLERANCE, MIN_SPEARMAN, run_rerun
    from referee.rules import registry, run_rules

    log = log or (lambda msg: None)
    root = Path(root)
    if not root.exists():
        raise UserError("no such folder; pass a submission folder written by `harness package`", path=root)
    if not root.is_dir():
        raise UserError("not a folder; pass a submission folder written by `harness package`", path=root)
    if data is not None and not Path(data).is_dir():
        raise UserError("data folder not found; pass the MicroLens_1M_MMCTR root (it holds MicroLens_1M_x1/)",
                        path=data)
    if track is not None and track not in (1, 2, 3):
        raise UserError(f"--track must be 1, 2 or 3, not {track}")
    if rerun not in (None, "predict", "full"):
        raise UserError(f"--rerun must be predict or full, not {rerun!r}")
    if rerun and data is None:
        raise UserError("--rerun needs --data DATA_DIR: the re-run predicts (and trains on) that dataset")
    if not (device == "cpu" or device == "cuda"):
        raise UserError(f"--device must be cpu or cuda, not {device!r}")
    if rerun and sandbox:
        from referee.sandbox.plan import probe

        iso = probe()
        if not iso.available:
            raise UserError(f"--rerun runs the package's code, and this machine offers no isolation "
                            f"({iso.namespaces_note}); run it where `unshare --user --net` works, or pass "
                            "--no-sandbox inside a throwaway container")

    try:
        ctx = PackageContext(root, track=track, data=data, expected_state=expected_state)
    except Exception as e:  # noqa: BLE001 - a verdict on any input
        return VerifyReport(str(root), track, rerun or "static", [internal_finding(e, "reading the package")],
                            {INTERNAL: "error"})

    # phase 1, static findings: every rule that reads files only (the ones that judge a re-run's evidence
    # wait for it when one is asked for)
    static_ids = [r.id for r in registry() if not (rerun and r.id in RERUN_AFFECTED)]
    findings, status = run_rules(ctx, only=static_ids)
    report = VerifyReport(str(root), ctx.track, rerun or "static", findings, status)
    if not rerun:
        return report

    # phase 2, re-run evidence: the package's own code on a copy, in the sandbox, unless phase 1 forbids it
    skip = _rerun_refusal(findings, ctx.track, rerun_only_if_clean)
    if skip:
        ctx.rerun = _skipped(rerun, skip)
    else:
        t0 = time.perf_counter()
        try:
            ctx.rerun = run_rerun(ctx, rerun, device=device, timeout=timeout,
                                  auc_tolerance=AUC_TOLERANCE if auc_tolerance is None else auc_tolerance,
                                  min_spearman=MIN_SPEARMAN if min_spearman is None else min_spearman, log=log,
                                  use_sandbox=sandbox, hide=hide, keep_prediction=keep_prediction)
        except Exception as e:  # noqa: BLE001 - a verdict on any input
            ctx.rerun = _skipped(rerun, f"the re-run failed inside the verifier ({type(e).__name__}: {str(e)[:200]})")
        log(f"re-run ({rerun}) took {time.perf_counter() - t0:.1f} s")
    ctx.rerun["sandboxed"] = bool(sandbox)

    # phase 3, re-run rules: the rules that judge the evidence, each run once
    found, rerun_status = run_rules(ctx, only=[i for i in RERUN_AFFECTED if i not in static_ids])
    report.findings += found
    report.status.update(rerun_status)
    report.rerun = ctx.rerun
    return report


def _rerun_refusal(static_findings: list[Finding], track: int | None, only_if_clean: bool) -> str | None:
    """Why the package's code may not run (None when it may): a failed safety check always stops it, any
    failed static rule does for `harness audit` (only_if_clean), and an unknown track leaves nothing to run."""
    failed = sorted({f.id for f in static_findings if f.severity == "error"})
    blocking = [i for i in failed if i in SAFETY_RULES]
    if only_if_clean and failed:
        return f"static verify failed ({', '.join(failed)})"
    if blocking:
        return f"the static safety checks failed ({', '.join(blocking)}); the package's code was not run"
    if track is None:
        return "the track is unknown"
    return None


def _skipped(mode: str, why: str) -> dict:
    """The re-run record of a re-run that did not happen: both of its parts say why."""
    return {"mode": mode, "predict": {"skipped": why}, "full": {"skipped": why}}


def rerun_summary(rerun: dict | None) -> list[str]:
    """One line per re-run measurement, for the table."""
    if not rerun:
        return []
    lines = []
    pred = rerun.get("predict") or {}
    if rerun.get("sandbox"):
        extra = ""
        covered = ((pred.get("sandbox") or {}).get("mounts") or {}).get("covered")
        if covered:
            extra += f"; emptied: {', '.join(covered)} (but the folders the re-run uses)"
        seccomp = pred.get("seccomp") or {}
        if seccomp.get("ok"):
            extra += f"; seccomp refuses {', '.join(seccomp.get('denied') or [])}"
        elif seccomp:
            extra += f"; no seccomp ({seccomp.get('note')})"
        lines.append(f"re-run sandbox: {rerun['sandbox']}{extra}")
    cmp = pred.get("comparison") or {}
    if pred.get("skipped"):
        lines.append(f"re-run predict: not run ({pred['skipped']})")
    elif cmp:
        state = "byte-identical" if cmp.get("identical") else (
            f"DIFFERENT ({cmp.get('rows_differing', '?')} scores, max |diff| {cmp.get('max_abs_diff', float('nan')):.3g})")
        lines.append(f"re-run predict: prediction.csv {state} on {rerun.get('device')} in {pred.get('seconds')} s; "
                     f"model that ran: {', '.join((pred.get('forward') or {}).get('roots') or ['?'])}")
    full = rerun.get("full") or {}
    if full.get("skipped"):
        lines.append(f"re-run full: not run ({full['skipped']})")
    elif "valid_auc" in full:
        new, old, rho = full.get("valid_auc"), full.get("recorded_valid_auc"), full.get("spearman")
        fmt = lambda v, d=5: f"{v:.{d}f}" if isinstance(v, (int, float)) else "?"  # noqa: E731
        lines.append(f"re-run full: valid AUC {fmt(new)} vs recorded {fmt(old)} (tolerance "
                     f"{rerun.get('auc_tolerance')}); test Spearman {fmt(rho, 4)} (bound {rerun.get('min_spearman')})")
    return lines


def render(report: VerifyReport, descriptions: dict[str, str] | None = None) -> str:
    """The readable table: one line per rule (ok / FAIL / warn / skip), its findings under it, a verdict.

    Every path and message is escaped (referee.inspection.context.printable): a file name or manifest key
    cannot move the cursor, rewrite a line or print a fake verdict.
    """
    from referee.inspection.context import printable

    lines = [f"{'RESULT':<7}{'RULE':<22}FINDINGS"]
    by_rule: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_rule.setdefault(f.id, []).append(f)
    label = {"ok": "ok", "error": "FAIL", "warning": "warn", "skipped": "skip"}
    for rid, st in report.status.items():
        found = by_rule.pop(rid, [])
        n_err = sum(f.severity == "error" for f in found)
        summary = (f"{n_err} error(s), {len(found) - n_err} warning(s)" if found
                   else "not applicable to this track or mode" if st == "skipped" else "")
        lines.append(f"{label.get(st, st):<7}{rid:<22}{summary}".rstrip())
        for f in found:
            path = printable(f.path, 300) + ": " if f.path else ""
            lines.append(f"       {f.severity:<8}{path}{printable(f.message, 1000)}")
    for rid, found in by_rule.items():  # findings of an id outside the registry (VERIFY)
        for f in found:
            lines.append(f"{'FAIL' if f.severity == 'error' else 'warn':<7}{rid:<22}{printable(f.path, 300)}: "
                         f"{printable(f.message, 1000)}")
    lines += [printable(x, 2000) for x in rerun_summary(report.rerun)]
    n_err = sum(f.severity == "error" for f in report.findings)
    n_warn = len(report.findings) - n_err
    verdict = "PASS" if report.ok else "FAIL"
    lines.append(f"{verdict}: {printable(report.root, 300)} checked as track {report.track if report.track else '?'} "
                 f"({report.mode}): {n_err} error(s), {n_warn} warning(s)")
    return "\n".join(lines)


def render_rules() -> str:
    from referee.rules import registry

    lines = [f"{'RULE':<22}{'TRACKS':<8}{'MODE':<9}DESCRIPTION"]
    for r in registry():
        lines.append(f"{r.id:<22}{','.join(map(str, r.tracks)):<8}{r.mode:<9}{r.description}")
    return "\n".join(lines)


@click.command("verify")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--rerun", type=click.Choice(["predict", "full"]), default=None,
              help="Also run the package's code on a copy: predict (byte-identical prediction.csv) or full "
                   "(re-train, compare AUC and rank correlation). Executes the submission.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Dataset root (MicroLens_1M_MMCTR): test IDs, the provided item_info, data hashes.")
@track_option(default=None, help="Check as this track [default: the manifest's].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device of the re-run (CPU: byte-identical; CUDA: within 1e-5).")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds allowed per re-run.")
@click.option("--auc-tolerance", type=float, default=None, help="--rerun full: |AUC - recorded| bound [0.005].")
@click.option("--min-spearman", type=float, default=None, help="--rerun full: rank-correlation bound [0.95].")
@click.option("--no-sandbox", "no_sandbox", is_flag=True,
              help="Run --rerun without isolation (only inside a throwaway container): no namespaces, no Landlock.")
@click.option("--list-rules", is_flag=True, help="Print the rules (id, tracks, mode, description) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print only {ok, exit_code, findings} as JSON on stdout.")
def verify_cmd(directory, rerun, data_dir, track, device, timeout, auc_tolerance, min_spearman, no_sandbox,
               list_rules, as_json) -> int:
    """Check a submission folder against the manifest, the schemas and the competition's rules."""
    guard_import_path()
    if list_rules:
        click.echo(render_rules())
        return 0
    if directory is None:
        raise UserError("missing DIR: pass the submission folder (harness verify DIR [--data DATA_DIR])")
    t0 = time.perf_counter()
    log = lambda m: click.echo(_printable_log(m), err=True)  # noqa: E731
    try:
        report = verify_package(directory, data=data_dir, track=track, rerun=rerun,
                                device=device, timeout=timeout, auc_tolerance=auc_tolerance,
                                min_spearman=min_spearman, log=log, sandbox=not no_sandbox)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a verdict on any input, never a traceback
        report = VerifyReport(str(directory), None, rerun or "static", [internal_finding(e, "verifying")],
                              {INTERNAL: "error"})
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(render(report))
    click.echo(f"verified in {time.perf_counter() - t0:.1f} s", err=True)
    return report.exit_code


def _printable_log(msg: str) -> str:
    from referee.inspection.context import printable

    return printable(msg, 4000)


def guard_import_path() -> None:
    """Keep the current folder off the import path, so that a package's own task1/, task2/ or harness/ in
    it can never be what the verifier imports; make stdout and stderr escape what they cannot encode."""
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != cwd
                   or _is_installed_root(p)]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass


def _is_installed_root(path: str) -> bool:
    """True when `path` is the project this harness is installed from (a source checkout's root)."""
    here = Path(__file__).resolve().parent.parent
    try:
        return Path(path or ".").resolve() == here
    except OSError:
        return False
