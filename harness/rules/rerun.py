"""`harness verify --rerun predict|full`: run the package's own code on a temporary copy, in subprocesses.

- `predict`: `python -m task2 predict --run outputs/task2 --data DATA --out ... --track T` with the copy
  first on the import path (see rerun_driver.py). On the CPU the re-computed prediction.csv must be
  byte-identical to the packaged one; on CUDA every score must agree within `CUDA_TOLERANCE`. The run
  also records which nn.Modules ran forward and whether the checkpoint loads strictly into the declared
  class rebuilt by the package's own code.
- `full`: everything `predict` does, then the package's recorded reproduce steps (MANIFEST.json
  `reproduce`: Task 1 embed for tracks 1 and 3, Task 2 train, predict) from scratch; the re-trained
  model's best validation AUC must be within `auc_tolerance` of the recorded one and the new test
  predictions' Spearman rank correlation with the packaged ones at least `min_spearman`.

Stated bounds: AUC_TOLERANCE = 0.005 is about two standard errors of an AUC near 0.97 on 10,000
validation rows (challenge.md, section 4); MIN_SPEARMAN = 0.95 allows GPU non-determinism between
two trainings but not a different model. On the CPU with the same seed and thread count, a re-train
is expected to reproduce exactly.

Results are plain dicts stored in `PackageContext.rerun`; the rules in rerun_rules.py judge them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUC_TOLERANCE = 0.005
MIN_SPEARMAN = 0.95
CUDA_TOLERANCE = 1e-5
ALLOWED_MODULES = ("task1", "task2", "harness")
PASS_ENV = ("PATH", "HOME", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "XDG_CACHE_HOME", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "SSL_CERT_FILE")


def _env(seed: str, tmp: Path, copy: Path) -> dict:
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env["PYTHONPATH"] = str(copy)  # for any Python the package's code starts itself (the driver isolates its own)
    env.update({"PYTHONHASHSEED": seed, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": str(tmp), "TQDM_DISABLE": "1"})
    return env


def _tail(path: Path, n: int = 1500) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [x for x in text.splitlines() if x.strip() and "it/s]" not in x and "s/it]" not in x]
    return "\n".join(lines)[-n:]


def _run(tmp: Path, copy: Path, mode: str, run_dir: Path, module: str, args: list[str], env: dict,
         timeout: float, tag: str) -> dict:
    """One driver subprocess; returns {rc, seconds, record, log_tail, timed_out}."""
    record_path = tmp / f"{tag}.record.json"
    log_path = tmp / f"{tag}.log"
    cmd = [sys.executable, "-B", "-s", str(tmp / "driver" / "rerun_driver.py"), str(record_path), str(copy),
           mode, str(run_dir), "--", module, *args]
    t0 = time.perf_counter()
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    record = None
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            record = None
    return {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "record": record,
            "log_tail": _tail(log_path), "timed_out": timed_out,
            "command": f"python -m {module} {' '.join(args)}"}


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
    diffs = [float((fa[c].cast(pl.Float64) - fb[c].cast(pl.Float64)).abs().max() or 0.0)
             for c in fa.columns if c != "ID"]
    out["max_abs_diff"] = max(diffs) if diffs else 0.0
    out["rows_differing"] = int(sum(int((fa[c] != fb[c]).sum()) for c in fa.columns if c != "ID"))
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
    """The manifest's reproduce steps with placeholders filled, or (.., why they are unusable)."""
    steps = ctx.section("reproduce").get("steps")
    if not isinstance(steps, list) or not steps:
        return [], "the manifest records no reproduce steps"
    out = []
    subst = {"{data}": str(data), "{work}": str(work), "{device}": device}
    for s in steps:
        if not isinstance(s, dict) or s.get("module") not in ALLOWED_MODULES or not isinstance(s.get("args"), list) \
                or not all(isinstance(a, str) for a in s["args"]):
            return [], f"reproduce step {s!r:.120} is not {{name, module in {ALLOWED_MODULES}, args: [str]}}"
        args = []
        for a in s["args"]:
            for k, v in subst.items():
                a = a.replace(k, v)
            args.append(a)
        out.append((str(s.get("name", s["module"])), s["module"], args))
    return out, None


def run_rerun(ctx, mode: str, device: str = "cpu", timeout: float = 3600.0,
              auc_tolerance: float = AUC_TOLERANCE, min_spearman: float = MIN_SPEARMAN, log=None) -> dict:
    """Run the package's code; return {"mode", "predict": {...}, "full": {...}} for the rerun rules."""
    log = log or (lambda msg: None)
    result: dict = {"mode": mode, "device": device, "auc_tolerance": auc_tolerance, "min_spearman": min_spearman}
    run_rel, pred_rel = ctx.one("task2_checkpoint"), ctx.one("prediction")
    if run_rel is None or pred_rel is None:
        result["predict"] = {"skipped": "the package lacks the Task 2 checkpoint or prediction.csv"}
        if mode == "full":
            result["full"] = dict(result["predict"])
        return result
    seed = str(((ctx.run_record() or {}).get("seeding") or {}).get("pythonhashseed") or "0")
    with tempfile.TemporaryDirectory(prefix="mmctr-rerun-") as tmp_name:
        tmp = Path(tmp_name)
        copy = tmp / "package"
        _copy_package(ctx, copy)
        (tmp / "driver").mkdir()
        shutil.copyfile(Path(__file__).with_name("rerun_driver.py"), tmp / "driver" / "rerun_driver.py")
        env = _env(seed, tmp, copy)
        run_dir = copy / Path(run_rel).parent
        out_dir = tmp / "rerun_prediction"
        args = ["predict", "--run", str(run_dir), "--data", str(Path(ctx.data).resolve()), "--out", str(out_dir),
                "--track", str(ctx.track), "--device", device]
        log(f"re-run: python -m task2 {' '.join(args)}")
        res = _run(tmp, copy, "predict", run_dir, "task2", args, env, timeout, "predict")
        rec = res.pop("record") or {}
        res.update({k: rec.get(k) for k in ("origins", "forward", "strict_load", "banned_loaded")})
        if res["rc"] == 0:
            res["comparison"] = _compare_predictions(out_dir / "prediction.csv", ctx.path(pred_rel), device)
        result["predict"] = res
        if mode == "full":
            result["full"] = _full(ctx, tmp, copy, env, device, timeout, pred_rel, log)
    return result


def _full(ctx, tmp: Path, copy: Path, env: dict, device: str, timeout: float, pred_rel: str, log) -> dict:
    work = tmp / "work"
    work.mkdir()
    steps, why = _steps(ctx, Path(ctx.data).resolve(), work, device)
    if why:
        return {"skipped": why}
    out: dict = {"steps": []}
    deadline = time.monotonic() + timeout
    for name, module, args in steps:
        log(f"re-run ({name}): python -m {module} {' '.join(args)}")
        res = _run(tmp, copy, "plain", work, module, args, env, max(1.0, deadline - time.monotonic()), name)
        res.pop("record", None)
        res["name"] = name
        out["steps"].append(res)
        if res["rc"] != 0:
            return out
    new_run = work / "task2" / "run.json"
    try:
        out["valid_auc"] = json.loads(new_run.read_text(encoding="utf-8")).get("best_valid_auc")
    except (OSError, json.JSONDecodeError):
        out["valid_auc"] = None
    out["recorded_valid_auc"] = (ctx.run_record() or {}).get("best_valid_auc")
    new_pred = work / "prediction" / "prediction.csv"
    out["spearman"] = _spearman(new_pred, ctx.path(pred_rel)) if new_pred.is_file() else None
    t1_new, t1_old = work / "task1" / "item_info.parquet", ctx.one("task1_embeddings")
    if t1_new.is_file() and t1_old is not None:
        from harness.io import sha256_file

        out["task1_identical"] = sha256_file(t1_new) == ctx.sha256(t1_old)
    return out
