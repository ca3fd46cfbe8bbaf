"""`harness verify --rerun predict|full`: run the package's own code on a copy, in a sandbox.

- `predict`: `python -m task2 predict --run outputs/task2 --data DATA --out SCRATCH/out --track T` with
  the copy first on the import path (see sandbox/rerun_driver.py). On the CPU the re-computed prediction.csv
  must be byte-identical to the packaged one; on CUDA every score must agree within `CUDA_TOLERANCE`.
  The run also records which nn.Modules ran forward, the declared class's layout built by the
  package's own code, and whether the checkpoint loads strictly into it.
- `full`: everything `predict` does, then the reproduce steps the verifier's own packaging code
  derives for this package (referee.rules.trust_rules.trusted_steps; never the manifest's): Task 1
  embed for tracks 1 and 3, Task 2 train, predict, from scratch; the re-trained model's best
  validation AUC must be within `auc_tolerance` of the recorded one and the new test predictions'
  Spearman rank correlation with the packaged ones at least `min_spearman`.

Every step runs in the sandbox of referee.sandbox.plan (no network, writes only to the scratch
folder, reads only of the package copy, the data's split files and Python, scrubbed environment,
CPU/memory/process limits) and under the driver's audit hook, whose events come back on a pipe as
they happen. The temporary folder holds `package/` (the copy, read-only inside), `driver/` (the
driver, its settings) and `scratch/` (HOME, TMPDIR, outputs: the only writable place).

Stated bounds: AUC_TOLERANCE = 0.005 is about two standard errors of an AUC near 0.97 on 10,000
validation rows (challenge.md, section 4); MIN_SPEARMAN = 0.95 allows GPU non-determinism between
two trainings but not a different model. On the CPU with the same seed and thread count, a re-train
is expected to reproduce exactly.

Results are plain dicts stored in `PackageContext.rerun`; the rules in rerun_rules.py judge them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from core.challenge import TORCH_TO_SAFETENSORS
from referee.sandbox import plan as sandbox
from referee.facts import AUC_TOLERANCE, BANNED, CUDA_TOLERANCE, MIN_SPEARMAN  # noqa: F401 - verify reads them here

MAX_EVENT_BYTES = 8 * 1024 * 1024  # what the verifier reads of one run's event stream
EVENT_KINDS = ("socket", "write", "read", "process", "native", "unpickle", "exec", "import", "introspect")


def _tail(path: Path, n: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [x for x in text.splitlines() if x.strip() and "it/s]" not in x and "s/it]" not in x]
    return "\n".join(lines)[-n:]


def _read_events(fd: int, sink: list) -> None:
    """Read the event pipe to its end (all writers closed), keeping at most MAX_EVENT_BYTES."""
    kept = 0
    buf = b""
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            if kept < MAX_EVENT_BYTES:
                buf += chunk[: MAX_EVENT_BYTES - kept]
                kept += len(chunk)
    lines = buf.splitlines()
    if kept >= MAX_EVENT_BYTES and lines:
        lines.pop()  # the line the limit cut
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        sink.append(doc if isinstance(doc, dict) else {"type": "garbled"})
    if kept >= MAX_EVENT_BYTES:
        sink.append({"type": "truncated"})


def _summarise(messages: list, token: str) -> dict:
    """{sandbox, record, events: {kind: [{what, stack}]}, truncated, tampered} from the pipe's messages.

    The first line is sandbox_init's report (written before the driver exists); every later line must
    be the driver's: the run's token, sequence numbers 0, 1, 2, ... without a gap, and the record last.
    Anything else is listed in `tampered`, and nothing from a line that breaks these is believed."""
    out: dict = {"sandbox": None, "record": None, "events": {k: [] for k in EVENT_KINDS}, "truncated": False,
                 "tampered": []}
    tampered: list[str] = []
    rest = messages
    if messages and messages[0].get("type") == "sandbox" and "token" not in messages[0]:
        out["sandbox"] = messages[0]
        rest = messages[1:]
    seq = 0
    for m in rest:
        kind = m.get("type")
        if kind == "truncated":
            out["truncated"] = True
            tampered.append(f"the event stream passed its size limit ({MAX_EVENT_BYTES // (1024 * 1024)} MiB)")
            continue
        if kind == "garbled":
            tampered.append("a line that is not the driver's JSON")
            continue
        if not secrets.compare_digest(str(m.get("token", "")), token):
            tampered.append(f"a {str(kind)[:20]!r} line without the run's token (written by other code than the "
                            "driver)")
            continue
        if m.get("seq") != seq:
            tampered.append(f"line {seq} of the driver arrived as {str(m.get('seq'))[:20]} (lines lost or replayed)")
            seq = m.get("seq") if isinstance(m.get("seq"), int) else seq
        seq += 1
        if out["record"] is not None:
            tampered.append("a line after the driver's record")
            continue
        if kind == "record":
            out["record"] = m
        elif kind == "event" and m.get("kind") in out["events"]:
            direct = m.get("direct")
            out["events"][m["kind"]].append({"what": str(m.get("what"))[:300],
                                             "stack": [str(s)[:300] for s in (m.get("stack") or [])][:12],
                                             "direct": str(direct)[:300] if direct else None})
    out["tampered"] = list(dict.fromkeys(tampered))[:5]
    return out


def _run(tmp: Path, plan: sandbox.Plan, mode: str, run_dir: Path, module: str, args: list[str], env: dict,
         timeout: float, tag: str) -> dict:
    """One sandboxed driver run; returns {rc, seconds, timed_out, log_tail, command, sandbox, record, events}."""
    log_path = tmp / "logs" / f"{tag}.log"
    log_path.parent.mkdir(exist_ok=True)
    read_fd, write_fd = os.pipe()
    token = secrets.token_hex(16)  # the driver's lines carry it; it reaches the driver only through token_fd
    token_fd, token_w = os.pipe()
    os.write(token_w, token.encode("ascii"))
    os.close(token_w)
    driver_argv = [sys.executable, "-B", "-s", str(tmp / "driver" / "rerun_driver.py"), str(write_fd),
                   str(token_fd), str(tmp / "driver" / "settings.json"), mode, str(run_dir), "--", module, *args]
    config = tmp / "driver" / f"{tag}.sandbox.json"
    config.write_text(json.dumps(plan.config(write_fd, driver_argv)), encoding="utf-8")
    cgroup = sandbox.PidsCgroup(plan.iso.pids_cgroup if plan.enabled else None, plan.limits.processes, tag)
    messages: list = []
    reader = threading.Thread(target=_read_events, args=(read_fd, messages), daemon=True)
    reader.start()
    t0 = time.perf_counter()
    timed_out = False
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(plan.command(str(tmp / "driver" / "sandbox_init.py"), str(config)),
                                    cwd=tmp / "package", env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    pass_fds=(write_fd, token_fd),
                                    preexec_fn=cgroup.join if cgroup.path else None)
            os.close(write_fd)
            write_fd = -1
            os.close(token_fd)
            token_fd = -1
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    finally:
        for fd in (write_fd, token_fd):
            if fd >= 0:
                os.close(fd)
        reader.join(timeout=10)
        cgroup.close()
    out = _summarise(messages, token)
    out.update({"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "timed_out": timed_out,
                "log_tail": _tail(log_path), "command": f"python -m {module} {' '.join(args)}"})
    return out


def _copy_package(ctx, dest: Path) -> None:
    """Copy the package's regular files (never links) into `dest`."""
    dest.mkdir(parents=True)
    for rel in ctx.files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with ctx.open(rel) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _compare_predictions(new: Path, old: Path, device: str) -> dict:
    import polars as pl

    if not new.is_file():
        return {"identical": False, "message": "the re-run wrote no prediction.csv"}
    if new.stat().st_size > 512 * 1024 * 1024:
        return {"identical": False, "message": f"the re-run wrote a {new.stat().st_size:,}-byte prediction.csv"}
    a, b = new.read_bytes(), old.read_bytes()
    out = {"identical": a == b, "bytes": [len(a), len(b)]}
    try:
        fa, fb = pl.read_csv(new), pl.read_csv(old)
    except Exception as e:  # polars raises several types for bad CSV
        out["message"] = f"cannot compare values ({type(e).__name__})"
        return out
    if fa.columns != fb.columns or fa.height != fb.height or not fa["ID"].equals(fb["ID"]):
        out["message"] = f"columns/rows differ: {fa.columns} x {fa.height} vs {fb.columns} x {fb.height}"
        return out
    try:
        diffs = [float((fa[c].cast(pl.Float64) - fb[c].cast(pl.Float64)).abs().max() or 0.0)
                 for c in fa.columns if c != "ID"]
        out["rows_differing"] = int(sum(int((fa[c] != fb[c]).sum()) for c in fa.columns if c != "ID"))
    except Exception as e:  # non-numeric columns
        out["message"] = f"cannot compare values ({type(e).__name__})"
        return out
    out["max_abs_diff"] = max(diffs) if diffs else 0.0
    out["within_tolerance"] = out["max_abs_diff"] <= CUDA_TOLERANCE
    out["device"] = device
    return out


def _spearman(new: Path, old: Path) -> float | None:
    import polars as pl

    try:
        fa, fb = pl.read_csv(new), pl.read_csv(old)
        col = [c for c in fb.columns if c != "ID"][0]
        joined = fb.select("ID", pl.col(col).alias("old")).join(
            fa.select("ID", pl.col(col).alias("new")), on="ID", how="inner")
        if joined.height != fb.height:
            return None
        return float(joined.select(pl.corr("old", "new", method="spearman")).item())
    except Exception:  # a broken re-run output is reported by the caller as a missing correlation
        return None


def _steps(ctx, data: Path, work: Path, device: str) -> tuple[list[tuple[str, str, list[str]]], str | None]:
    """The verifier's own reproduce steps for this package with placeholders filled, or (.., why not)."""
    from referee.rules.trust_rules import trusted_steps

    steps, _ = trusted_steps(ctx)
    if not steps:
        return [], "the reproduce steps cannot be derived (unknown track, or no task1.json)"
    from core.package_format import fill_step

    return [(s["name"], s["module"], fill_step(s, data, work, device)) for s in steps], None


def make_plan(ctx, tmp: Path, mode: str, device: str, timeout: float, use_sandbox: bool, hide=(),
              limits: sandbox.Limits | None = None) -> sandbox.Plan:
    iso = sandbox.probe()
    read = [str(tmp / "package"), str(tmp / "driver"), *sandbox.python_roots(), *sandbox.data_roots(
        Path(ctx.data), mode)]
    read += [p for p in sandbox.SYSTEM_READ if os.path.exists(p)] + sandbox.etc_roots()
    if mode == "full":
        read += sandbox.cache_roots()
    return sandbox.Plan(enabled=use_sandbox, iso=iso, scratch=str(tmp / "scratch"), read=read,
                        write=[str(tmp / "scratch")], devices=sandbox.devices(device),
                        limits=limits or sandbox.default_limits(timeout, device),
                        hide=sandbox.hidden_paths(read, hide))


def run_rerun(ctx, mode: str, device: str = "cpu", timeout: float = 3600.0,
              auc_tolerance: float = AUC_TOLERANCE, min_spearman: float = MIN_SPEARMAN, log=None,
              use_sandbox: bool = True, hide=(), keep_prediction: Path | None = None) -> dict:
    """Run the package's code; return {"mode", "sandbox", "predict": {...}, "full": {...}} for the rerun rules.

    `hide`: paths covered inside the sandbox (the ground truth, the other packages); `keep_prediction`:
    where to copy the re-computed prediction.csv (harness audit scores it).
    """
    log = log or (lambda msg: None)
    result: dict = {"mode": mode, "device": device, "auc_tolerance": auc_tolerance, "min_spearman": min_spearman}
    run_rel, pred_rel = ctx.one("task2_checkpoint"), ctx.one("prediction")
    if run_rel is None or pred_rel is None:
        result["predict"] = {"skipped": "the package lacks the Task 2 checkpoint or prediction.csv"}
        if mode == "full":
            result["full"] = dict(result["predict"])
        return result
    seed = str(((ctx.run_record() or {}).get("seeding") or {}).get("pythonhashseed") or "0")
    if not seed.isdigit():
        seed = "0"
    with tempfile.TemporaryDirectory(prefix="mmctr-rerun-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        copy = tmp / "package"
        _copy_package(ctx, copy)
        (tmp / "driver").mkdir()
        here = Path(sandbox.__file__).parent  # referee/sandbox/: the two scripts run as files, importing nothing
        for name in ("rerun_driver.py", "sandbox_init.py"):
            shutil.copyfile(here / name, tmp / "driver" / name)
        scratch = tmp / "scratch"
        for sub in ("home", "tmp", "cache", "out", "work"):
            (scratch / sub).mkdir(parents=True)
        plan = make_plan(ctx, tmp, mode, device, timeout, use_sandbox, hide)
        (tmp / "driver" / "settings.json").write_text(json.dumps(
            {"package_root": str(copy), "read": plan.read, "devices": plan.devices,
             "write": plan.write + (["/dev/shm"] if plan.enabled else []),
             "banned": list(BANNED), "dtype_codes": TORCH_TO_SAFETENSORS}),
            encoding="utf-8")
        result["sandbox"] = plan.describe()
        env = sandbox.scrubbed_env(scratch, seed)
        run_dir = copy / Path(run_rel).parent
        out_dir = scratch / "out"
        data = str(Path(ctx.data).resolve())
        args = ["predict", "--run", str(run_dir), "--data", data, "--out", str(out_dir), "--track", str(ctx.track),
                "--device", device]
        log(f"re-run ({'sandbox: ' + ('on' if use_sandbox else 'OFF')}): python -m task2 {' '.join(args)}")
        res = _run(tmp, plan, "predict", run_dir, "task2", args, env, timeout, "predict")
        rec = res.get("record") or {}
        res.update({k: rec.get(k) for k in ("origins", "forward", "strict_load", "declared_state", "banned_loaded",
                                            "imports", "seccomp")})
        if res["rc"] == 0 and res.get("record") is not None:
            res["comparison"] = _compare_predictions(out_dir / "prediction.csv", ctx.path(pred_rel), device)
            if keep_prediction is not None and (out_dir / "prediction.csv").is_file():
                shutil.copyfile(out_dir / "prediction.csv", keep_prediction)
        result["predict"] = res
        if mode == "full":
            result["full"] = _full(ctx, tmp, plan, env, device, timeout, pred_rel, log)
    return result


def _full(ctx, tmp: Path, plan: sandbox.Plan, env: dict, device: str, timeout: float, pred_rel: str, log) -> dict:
    work = tmp / "scratch" / "work"
    steps, why = _steps(ctx, Path(ctx.data).resolve(), work, device)
    if why:
        return {"skipped": why}
    out: dict = {"steps": []}
    deadline = time.monotonic() + timeout
    for name, module, args in steps:
        log(f"re-run ({name}): python -m {module} {' '.join(args)}")
        res = _run(tmp, plan, "plain", work, module, args, env, max(1.0, deadline - time.monotonic()), name)
        rec = res.get("record") or {}
        res.update({k: rec.get(k) for k in ("origins", "banned_loaded", "imports", "seccomp")})
        res["name"] = name
        out["steps"].append(res)
        if res["rc"] != 0:
            return out
    new_run = work / "task2" / "run.json"
    try:
        out["valid_auc"] = json.loads(new_run.read_text(encoding="utf-8")).get("best_valid_auc")
    except (OSError, ValueError):
        out["valid_auc"] = None
    out["recorded_valid_auc"] = (ctx.run_record() or {}).get("best_valid_auc")
    new_pred = work / "prediction" / "prediction.csv"
    out["spearman"] = _spearman(new_pred, ctx.path(pred_rel)) if new_pred.is_file() else None
    t1_new, t1_old = work / "task1" / "item_info.parquet", ctx.one("task1_embeddings")
    if t1_new.is_file() and t1_old is not None:
        from core.io import sha256_file

        out["task1_identical"] = sha256_file(t1_new) == ctx.sha256(t1_old)
    return out
