"""`harness audit LEADERBOARD.csv SUBMISSIONS_DIR --data D [--truth T] [--rerun predict|full]`: the final
round as the rules describe it. Organizers reproduce from the top of the leaderboard down, and an award
passes on when a result does not reproduce.

LEADERBOARD.csv has a header with `team` and `score` (the leaderboard's claimed score, higher is better)
and optionally `package` (the team's folder under SUBMISSIONS_DIR; default: the team name). Teams are
taken in score order (ties keep the file's order). For each, a worker process (`python -m referee.audit
worker`) runs `harness verify` on the package, and when the static checks pass, the re-run in the
sandbox (`--rerun`, default predict), with the ground truth, the submissions folder and the audit's own
folder hidden from the package's code. With `--truth`, the re-computed prediction (or, without a re-run,
the packaged one) is scored as the competition scores it (referee.score) and compared with the claimed
score: it must be within `--score-tolerance` (default 1e-4: leaderboards show AUCs to four decimals, and
a byte-identical re-run scores exactly the packaged prediction).

A team passes when verify passes (re-run included) and, with the truth, its reproduced score is within
the tolerance. The award order numbers the passing teams in score order: a failing team's place passes
to the next. The table (team, claimed score, verify result, re-run result, reproduced score, award) is
written to OUT/audit.md, audit.csv and audit.json after every team.

Resumable: each team's result is kept in OUT/teams/ with a key (a fingerprint of every file of the package,
its path, size and content hash, walked without following links; the options, the truth's hash, the
harness version); a new run reuses a result whose key matches and does the rest. A team folder that is a
link, or resolves outside SUBMISSIONS_DIR, is not judged; a package whose files equal a higher-ranked
team's fails with the other team named. Text written to audit.csv is escaped against spreadsheet
formulas (a leading =, +, -, @), and to audit.md against table breaks. A package that hangs is stopped at `--timeout` seconds (the worker's whole process group is
killed) and fails. Progress goes to stderr, the table to stdout (JSON alone under --json).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from core.challenge import DATASET_DIR
from core.errors import UserError

MAX_LEADERBOARD_BYTES = 16 * 1024 * 1024
MAX_TEAMS = 10_000
SCORE_TOLERANCE = 1e-4
TRACK_SCORE = {1: "AUC_Task1", 2: "AUC_Task2", 3: "AUC_Task1&2"}


@dataclass(frozen=True)
class Entry:
    order: int  # position in the file
    team: str
    score: float
    package: str  # folder name under SUBMISSIONS_DIR


def _safe_folder(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


def read_leaderboard(path: Path) -> list[Entry]:
    """The leaderboard's rows in score order; UserError naming the line for anything malformed."""
    if not path.is_file():
        raise UserError("leaderboard not found; pass a CSV with the columns team,score[,package]", path=path)
    if path.stat().st_size > MAX_LEADERBOARD_BYTES:
        raise UserError(f"over {MAX_LEADERBOARD_BYTES:,} bytes; a leaderboard is a small CSV", path=path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"not a readable UTF-8 CSV ({type(e).__name__})", path=path) from None
    if not rows or not {"team", "score"} <= set(rows[0]):
        raise UserError("needs a header with the columns team and score (and optionally package)", path=path)
    if len(rows) > MAX_TEAMS:
        raise UserError(f"{len(rows):,} rows; at most {MAX_TEAMS:,} teams", path=path)
    out, seen = [], set()
    for i, row in enumerate(rows):
        team = (row.get("team") or "").strip()
        try:
            score = float(row.get("score") or "")
        except ValueError:
            score = math.nan
        package = (row.get("package") or team).strip()
        line = i + 2
        if not team or not math.isfinite(score):
            raise UserError(f"line {line}: a team name and a finite score are needed", path=path)
        if not _safe_folder(package):
            raise UserError(f"line {line}: package {package!r} is not a folder name inside SUBMISSIONS_DIR", path=path)
        if package in seen:
            raise UserError(f"line {line}: package {package!r} appears twice", path=path)
        seen.add(package)
        out.append(Entry(i, team, score, package))
    return sorted(out, key=lambda e: (-e.score, e.order))


def award_order(rows: list[dict]) -> list[dict]:
    """Number the passing rows 1, 2, ... in score order; a failing row gets None (its place passes on)."""
    n = 0
    for row in rows:
        if row.get("passed"):
            n += 1
            row["award"] = n
        else:
            row["award"] = None
    return rows


def _sha256_file(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def package_fingerprint(pkg: Path) -> str:
    """sha256 over every entry of a package folder, walked without following links: each path with its kind,
    size and content hash (a link with its target). The resume key holds it, so a result is reused only for
    the same files, not merely the same MANIFEST.json."""
    from referee.inspection.context import MAX_ENTRIES

    h = hashlib.sha256()
    stack, seen = [pkg], 0
    while stack:
        folder = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as e:
            h.update(f"unreadable {folder.relative_to(pkg)} {e.errno}\0".encode())
            continue
        for name in names:
            path = folder / name
            seen += 1
            if seen > MAX_ENTRIES:
                h.update(b"too many entries\0")
                return h.hexdigest()
            rel = path.relative_to(pkg).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                h.update(f"link {rel} -> {os.readlink(path)}\0".encode("utf-8", "surrogateescape"))
            elif stat.S_ISDIR(st.st_mode):
                h.update(f"dir {rel}\0".encode("utf-8", "surrogateescape"))
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                h.update(f"file {rel} {st.st_size} {_sha256_file(path)}\0".encode("utf-8", "surrogateescape"))
            else:
                h.update(f"other {rel} {stat.S_IFMT(st.st_mode)}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _folder_problem(pkg: Path, submissions: Path) -> str | None:
    """Why a team's folder is not judged (None when it is): a link, or a place outside SUBMISSIONS_DIR."""
    if pkg.is_symlink():
        return "the package folder is a symbolic link; audit judges only real folders inside SUBMISSIONS_DIR"
    try:
        inside = pkg.resolve().is_relative_to(submissions.resolve())
    except OSError:
        inside = False
    if not inside:
        return "the package folder resolves outside SUBMISSIONS_DIR"
    if not pkg.is_dir():
        return "no package folder"
    return None


def csv_cell(value):
    """A value as a spreadsheet may safely read it: text starting with =, +, -, @ (or a tab or carriage
    return) is a formula to Excel, LibreOffice and Sheets, so it gets a leading apostrophe (OWASP's advice
    against CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _slug(entry: Entry) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in entry.package)[:60]
    return f"{entry.order:04d}-{safe}-{hashlib.sha256(entry.package.encode()).hexdigest()[:8]}"


def _judge(entry: Entry, result: dict, truth: bool, tolerance: float) -> dict:
    """The table row for a team from its worker's result."""
    row = {"team": entry.team, "package": entry.package, "claimed_score": entry.score,
           "verify": result.get("verify", "not run"), "rerun": result.get("rerun", "not run"),
           "reproduced_score": result.get("reproduced_score"), "score_source": result.get("score_source"),
           "seconds": result.get("seconds"), "errors": result.get("errors", [])}
    why = []
    if result.get("status") != "done":
        why.append(result.get("status", "not run"))
    elif not result.get("verify_ok"):
        why.append("verify failed")
    if truth and result.get("status") == "done":
        rep = result.get("reproduced_score")
        if not isinstance(rep, (int, float)):
            why.append("no reproduced score")
        else:
            row["score_diff"] = abs(rep - entry.score)
            if row["score_diff"] > tolerance:
                why.append(f"reproduced score differs from the claimed one by {row['score_diff']:.6f} (> {tolerance})")
    row["passed"] = not why
    row["reason"] = "; ".join(why)
    return row


def _fmt(v, digits=6) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.{digits}f}"
    return "" if v is None else str(v)


def render_markdown(rows: list[dict], meta: dict) -> str:
    from referee.inspection.context import printable

    def cell(v) -> str:
        return printable(v, 300).replace("|", "\\|")

    lines = [f"# Final-round audit ({meta['teams']} teams)", "",
             f"Re-run: {meta['rerun'] or 'none (static verify only)'}; truth: {meta['truth'] or 'none'}; "
             f"score tolerance: {meta['tolerance']}; sandbox: {meta['sandbox']}.", "",
             "| # | team | claimed score | verify | re-run | reproduced score | award | why not |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        award = str(r["award"]) if r.get("award") else "-"
        lines.append(f"| {i} | {cell(r['team'])} | {_fmt(r['claimed_score'])} | {cell(r['verify'])} | "
                     f"{cell(r['rerun'])} | {_fmt(r.get('reproduced_score'))} | {award} | "
                     f"{cell(r.get('reason', ''))} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, rows: list[dict], meta: dict) -> None:
    from core.io import write_json_atomic, write_text_atomic

    write_text_atomic(out / "audit.md", render_markdown(rows, meta))
    fields = ["rank", "team", "package", "claimed_score", "verify", "rerun", "reproduced_score", "score_diff",
              "award", "reason"]
    lines = [fields]
    for i, r in enumerate(rows, 1):
        lines.append([csv_cell(v) for v in (
            i, r["team"], r["package"], r["claimed_score"], r["verify"], r["rerun"],
            "" if r.get("reproduced_score") is None else r["reproduced_score"],
            "" if r.get("score_diff") is None else r["score_diff"], r.get("award") or "", r.get("reason", ""))])
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    write_text_atomic(out / "audit.csv", buf.getvalue())
    write_json_atomic(out / "audit.json", {"meta": meta, "rows": rows})


def _run_worker(spec: dict, spec_path: Path, log_path: Path, timeout: float) -> dict:
    """One team's verify in a worker process group, killed at `timeout`."""
    from core.io import write_json_atomic

    write_json_atomic(spec_path, spec)
    result_path = Path(spec["result"])
    result_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    cwd = spec_path.parent
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "referee.audit", "worker", str(spec_path)], cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"status": f"timeout after {timeout:g} s", "seconds": round(time.perf_counter() - t0, 1)}
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-300:] if log_path.is_file() else ""
        return {"status": f"the verifier's worker exited {proc.returncode} without a result: {' '.join(tail.split())}",
                "seconds": round(time.perf_counter() - t0, 1)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run_audit(leaderboard: Path, submissions: Path, data: Path, out: Path, truth: Path | None = None,
              rerun: str | None = "predict", timeout: float = 7200.0, tolerance: float = SCORE_TOLERANCE,
              sandbox: bool = True, device: str = "cpu", log=None) -> dict:
    """Audit every team (see the module docstring); returns {"meta", "rows"} and writes the tables."""
    from referee.released import verifier_version
    from referee.sandbox.plan import probe

    log = log or (lambda msg: None)
    entries = read_leaderboard(leaderboard)
    if not submissions.is_dir():
        raise UserError("submissions folder not found", path=submissions)
    if not data.is_dir():
        raise UserError("data folder not found; pass the MicroLens_1M_MMCTR root", path=data)
    if truth is not None:
        if not truth.is_file():
            raise UserError("ground truth not found", path=truth)
        rt = truth.resolve()
        if rt.is_relative_to((data / DATASET_DIR).resolve()) or rt.is_relative_to(submissions.resolve()):
            raise UserError("the ground truth lies where the packages' code can read it (the data's split folder "
                            "or the submissions); keep it elsewhere", path=truth)
    if rerun is not None and sandbox and not probe().available:
        raise UserError(f"--rerun runs the packages' code, and this machine offers no isolation "
                        f"({probe().namespaces_note}); pass --no-sandbox only inside a throwaway container")
    for sub in ("teams", "predictions", "logs", "work"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    truth_sha = _sha256_file(truth) if truth is not None else None
    meta = {"leaderboard": str(leaderboard), "submissions": str(submissions), "data": str(data),
            "truth": str(truth) if truth else None, "rerun": rerun, "tolerance": tolerance, "device": device,
            "sandbox": (probe().describe(sandbox) if rerun else "no re-run"), "teams": len(entries),
            "harness_version": verifier_version()}
    hide = [str(p.resolve()) for p in (submissions, out) + ((truth,) if truth else ())]
    rows: list[dict] = []
    same_content: dict[str, str] = {}  # package fingerprint -> the first (highest-scored) team with it
    for i, entry in enumerate(entries, 1):
        slug = _slug(entry)
        pkg = submissions / entry.package
        problem = _folder_problem(pkg, submissions)
        fingerprint = None if problem else package_fingerprint(pkg)
        key = {"files": fingerprint, "rerun": rerun, "data": str(data.resolve()),
               "truth": truth_sha, "device": device, "sandbox": sandbox, "harness": verifier_version()}
        cached_path = out / "teams" / f"{slug}.json"
        result = None
        try:
            cached = json.loads(cached_path.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                result = cached
        except (OSError, ValueError):
            pass
        if result is not None:
            log(f"[{i}/{len(entries)}] {entry.team}: resumed ({result.get('verify')}, {result.get('rerun')})")
        else:
            log(f"[{i}/{len(entries)}] {entry.team}: verifying {pkg}" + (f" with --rerun {rerun}" if rerun else ""))
            spec = {"package": str(pkg), "data": str(data), "truth": str(truth) if truth else None, "rerun": rerun,
                    "timeout": timeout, "sandbox": sandbox, "device": device, "hide": hide,
                    "prediction": str((out / "predictions" / f"{slug}.csv").resolve()),
                    "result": str((out / "work" / f"{slug}.result.json").resolve())}
            if problem:
                result = {"status": problem, "verify": "not run"}
            else:
                # --rerun full runs predict, then the reproduce steps, each phase within `timeout`
                result = _run_worker(spec, out / "work" / f"{slug}.spec.json", out / "logs" / f"{slug}.log",
                                     timeout * (2 if rerun == "full" else 1) + 120)
            result["key"] = key
            from core.io import write_json_atomic

            write_json_atomic(cached_path, result)
            log(f"[{i}/{len(entries)}] {entry.team}: {result.get('verify')}; re-run: {result.get('rerun')} "
                f"({result.get('seconds', 0)} s)")
        row = _judge(entry, result, truth is not None, tolerance)
        first = same_content.setdefault(fingerprint, entry.team) if fingerprint else entry.team
        if first != entry.team:  # one package, two places: the higher-ranked team keeps it
            row["passed"] = False
            row["reason"] = "; ".join(x for x in (row["reason"], f"the same package content as {first}") if x)
        rows.append(row)
        write_tables(out, award_order(list(rows)), meta)
    rows = award_order(rows)
    write_tables(out, rows, meta)
    return {"meta": meta, "rows": rows}


# ---------------------------------------------------------------------------------------------
# the worker: one package, in its own process


def _rerun_text(report) -> str:
    rr = report.rerun or {}
    pred = rr.get("predict") or {}
    if not rr:
        return "not run"
    if pred.get("skipped"):
        return f"not run ({pred['skipped']})"
    if pred.get("timed_out"):
        return "timed out"
    if pred.get("rc") != 0:
        return f"failed (exit {pred.get('rc')})"
    cmp = pred.get("comparison") or {}
    state = "byte-identical" if cmp.get("identical") else f"differs ({cmp.get('rows_differing', '?')} scores)"
    failed = sorted({f.id for f in report.findings if f.severity == "error" and f.id.startswith("RERUN")})
    return state + (f"; {', '.join(failed)} failed" if failed else "")


def worker(spec: dict) -> dict:
    """Verify one package (static, then the sandboxed re-run when static passes) and score it."""
    from referee.verify import verify_package

    pkg, data = Path(spec["package"]), Path(spec["data"])
    prediction = Path(spec["prediction"])
    prediction.unlink(missing_ok=True)
    report = verify_package(pkg, data=data, rerun=spec.get("rerun"), device=spec.get("device", "cpu"),
                            timeout=float(spec.get("timeout", 3600)), sandbox=bool(spec.get("sandbox", True)),
                            hide=spec.get("hide", ()), keep_prediction=prediction, rerun_only_if_clean=True,
                            log=lambda m: print(m, file=sys.stderr))
    errors = sorted({f.id for f in report.findings if f.severity == "error"})
    out = {"status": "done", "verify_ok": report.ok, "track": report.track,
           "verify": "PASS" if report.ok else f"FAIL ({', '.join(errors)})", "errors": errors,
           "rerun": _rerun_text(report) if spec.get("rerun") else "not requested"}
    if spec.get("truth"):
        from referee.score import score

        source, path = ("re-run", prediction) if spec.get("rerun") else ("packaged", pkg / "prediction.csv")
        out["score_source"] = source
        if path.is_file() and report.track in TRACK_SCORE:
            try:
                out["reproduced_score"] = score(path, spec["truth"])["scores"][TRACK_SCORE[report.track]]
            except UserError as e:
                out["score_error"] = e.one_line()
    return out


def worker_main(argv: list[str]) -> int:
    from core.io import write_json_atomic
    from referee.verify import guard_import_path

    guard_import_path()
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    try:
        result = worker(spec)
    except UserError as e:
        result = {"status": f"verify refused: {e.one_line()}", "verify": "not run"}
    except Exception as e:  # noqa: BLE001 - the audit goes on with the next team
        result = {"status": f"internal error ({type(e).__name__}: {str(e)[:200]})", "verify": "not run"}
    write_json_atomic(spec["result"], result)
    return 0


@click.command("audit")
@click.argument("leaderboard", type=click.Path(path_type=Path))
@click.argument("submissions", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Dataset root (MicroLens_1M_MMCTR) the packages predict on.")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="ground_truth.csv (ID,label): score the reproduced predictions against it.")
@click.option("--rerun", type=click.Choice(["predict", "full", "none"]), default="predict", show_default=True,
              help="Re-run each package's code in the sandbox (none: static verify only).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("audit"), show_default=True,
              help="Folder for the tables, per-team results (resume), logs and reproduced predictions.")
@click.option("--timeout", type=float, default=7200.0, show_default=True,
              help="Seconds allowed per package (per phase under --rerun full: predict, then the re-training).")
@click.option("--score-tolerance", type=float, default=SCORE_TOLERANCE, show_default=True,
              help="|reproduced - claimed| allowed.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--no-sandbox", "no_sandbox", is_flag=True, help="Re-run without isolation (throwaway container only).")
@click.option("--json", "as_json", is_flag=True, help="Print only the table as JSON on stdout.")
def audit_cmd(leaderboard, submissions, data_dir, truth, rerun, out_dir, timeout, score_tolerance, device,
              no_sandbox, as_json) -> int:
    """Verify the leaderboard's packages from the top down and give the award order (exit 1 if any fails)."""
    from referee.verify import guard_import_path

    guard_import_path()
    doc = run_audit(leaderboard, submissions, data_dir, out_dir, truth=truth, rerun=None if rerun == "none" else rerun,
                    timeout=timeout, tolerance=score_tolerance, sandbox=not no_sandbox, device=device,
                    log=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        click.echo(render_markdown(doc["rows"], doc["meta"]))
        click.echo(f"tables: {out_dir / 'audit.md'}, audit.csv, audit.json", err=True)
    return 0 if all(r["passed"] for r in doc["rows"]) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[1:]))
    sys.exit("usage: python -m referee.audit worker SPEC.json (harness audit starts it)")
