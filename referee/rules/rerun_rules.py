"""Rules judged on the results of `harness verify --rerun predict|full` (see referee.rerun)."""

from __future__ import annotations

from core.errors import error, warning
from referee.rules.registry import rule
from referee.rules.code_rules import _rerun_steps, competitor_modules
from referee.rules.trust_rules import trusted_steps
from referee.facts import CUDA_TOLERANCE



def _failed_run(rid: str, res: dict, where: str) -> list:
    if res.get("skipped"):
        return [error(rid, f"not run: {res['skipped']}", where)]
    sb = res.get("sandbox")
    if isinstance(sb, dict) and sb.get("ok") is False:
        return [error(rid, f"the sandbox could not be set up ({sb.get('failed_step')}: {sb.get('error')}); the "
                      "package's code did not run", where)]
    if res.get("timed_out"):
        return [error(rid, f"`{res.get('command')}` ran past the time limit ({res.get('seconds')} s)", where)]
    if res.get("rc") != 0:
        tail = " | ".join(str(res.get("log_tail", "")).splitlines()[-3:])
        return [error(rid, f"`{res.get('command')}` exited {res.get('rc')}: {tail[:500]}", where)]
    if "record" in res and res.get("record") is None:
        return [error(rid, f"`{res.get('command')}` exited 0 but the driver's record never came back: the "
                      "package's code ended the process itself", where)]
    return []


def _origin_findings(rid: str, res: dict, where: str) -> list:
    out = []
    for name, info in (res.get("origins") or {}).items():
        if isinstance(info, dict) and not info.get("inside"):
            out.append(error(rid, f"re-run imported {name} from {info.get('file')}, not from the package copy",
                             where))
    return out


def _earlier_predict_device(ctx) -> str:
    """Releases up to 0.1.0 predicted on the training device (their steps, as trusted_steps derives them for
    such a package, say "{device}") and did not record it in predict.json."""
    steps, device = trusted_steps(ctx)
    predict = next((s for s in steps or [] if s["name"] == "predict"), {"args": []})
    return device if "{device}" in predict["args"] else "cpu"


@rule("RERUN-PREDICT", "the package's own code, run on a copy, re-computes prediction.csv byte for byte on "
      "the CPU (within 1e-5 per score where the re-run or the packaged prediction ran on CUDA)", mode="predict")
def check_rerun_predict(ctx):
    rid = "RERUN-PREDICT"
    where = ctx.one("prediction") or "prediction.csv"
    res = (ctx.rerun or {}).get("predict") or {"skipped": "no re-run results"}
    out = _failed_run(rid, res, where)
    if out:
        return out
    out += _origin_findings(rid, res, where)
    cmp = res.get("comparison") or {}
    if cmp.get("identical"):
        return out
    detail = cmp.get("message") or (f"{cmp.get('rows_differing', '?')} score(s) differ, max |diff| "
                                    f"{cmp.get('max_abs_diff', float('nan')):.3g}")
    recorded = str((ctx.predict_record() or {}).get("device") or _earlier_predict_device(ctx))
    on_cuda = [what for what, dev in (("the re-run", str(cmp.get("device", "cpu"))), ("the packaged prediction",
                                                                                    recorded)) if dev.startswith("cuda")]
    if on_cuda and cmp.get("within_tolerance"):
        out.append(warning(rid, f"not byte-identical, but {' and '.join(on_cuda)} ran on CUDA and every score is "
                           f"within {CUDA_TOLERANCE:g}: {detail}", where))
    else:
        out.append(error(rid, f"the re-computed prediction.csv differs from the packaged one: {detail}", where))
    return out


@rule("RERUN-FULL", "re-training Task 1 and Task 2 from the package's code and configs gives a validation AUC "
      "within the stated tolerance of the recorded one and test predictions rank-correlated above the bound",
      mode="full")
def check_rerun_full(ctx):
    rid = "RERUN-FULL"
    rerun = ctx.rerun or {}
    res = rerun.get("full") or {"skipped": "no re-run results"}
    where = ctx.one("task2_record") or "run.json"
    if res.get("skipped"):
        return [error(rid, f"not run: {res['skipped']}", where)]
    for step in res.get("steps", []):
        found = _failed_run(rid, step, where)
        if found:
            return found
    out = []
    tol, bound = rerun.get("auc_tolerance"), rerun.get("min_spearman")
    new, old = res.get("valid_auc"), res.get("recorded_valid_auc")
    if not isinstance(new, (int, float)) or not isinstance(old, (int, float)):
        out.append(error(rid, f"no validation AUC to compare (re-run {new!r}, recorded {old!r})", where))
    elif abs(new - old) > tol:
        out.append(error(rid, f"re-trained validation AUC {new:.5f} vs recorded {old:.5f}: |diff| "
                         f"{abs(new - old):.5f} > tolerance {tol}", where))
    rho = res.get("spearman")
    if rho is None:
        out.append(error(rid, "the re-trained model's test predictions could not be compared with the packaged "
                         "ones", ctx.one("prediction") or where))
    elif rho < bound:
        out.append(error(rid, f"Spearman rank correlation of re-trained vs packaged test predictions {rho:.4f} "
                         f"< {bound}", ctx.one("prediction") or where))
    if res.get("task1_identical") is False:
        out.append(warning(rid, "re-computed Task 1 item_info.parquet is not byte-identical to the packaged one",
                           ctx.one("task1_embeddings") or where))
    return out


def _competitor_frame(event: dict, competitor: set[str]) -> str | None:
    """The competitor's file:line the event came from: the nearest package frame, unless the event
    happened while importing another module (a library's own import-time work)."""
    frame = event.get("direct")
    if frame and str(frame).rsplit(":", 1)[0] in competitor:
        return str(frame)
    return None


@rule("RERUN-SANDBOX", "the re-runs ran in the sandbox (no network, writes only to the scratch folder; the "
      "mechanism is reported) and the package's code opened no network socket, wrote nothing outside its scratch "
      "folder, read nothing outside the package, the data's split files and Python, and started no process, ran "
      "no exec/compile, native code or unpickling of its own; Task 2's predict imported nothing of Task 1",
      mode="predict")
def check_sandbox(ctx):
    rid = "RERUN-SANDBOX"
    rerun = ctx.rerun or {}
    out = []
    where = ctx.one("task2_checkpoint") or "."
    if rerun.get("sandboxed") is False:
        out.append(warning(rid, "ran without isolation (--no-sandbox): the package's code had the verifier's user, "
                           "network and files; only the audit hook's record below speaks for it", where))
    competitor = {mod.path for mod in competitor_modules(ctx).values()}
    for step, res in _rerun_steps(ctx):
        sb = res.get("sandbox")
        if isinstance(sb, dict) and sb.get("ok") is False:
            continue  # RERUN-PREDICT / RERUN-FULL report the failed set-up
        events = res.get("events") or {}

        def at(e):
            stack = e.get("stack") or []
            return f" (at {stack[0]})" if stack else ""

        for e in events.get("socket", [])[:5]:
            out.append(error(rid, f"re-run ({step}) used the network: {e['what']}{at(e)}", where))
        for e in events.get("write", [])[:5]:
            out.append(error(rid, f"re-run ({step}) wrote outside its scratch folder: {e['what']}{at(e)}", where))
        for e in events.get("read", [])[:5]:
            out.append(error(rid, f"re-run ({step}) read outside the package, the data and Python: {e['what']}"
                             f"{at(e)}", where))
        for kind, what in (("process", "started a process"), ("native", "loaded native code"),
                           ("unpickle", "unpickled"), ("exec", "ran exec/compile")):
            for e in events.get(kind, [])[:20]:
                frame = _competitor_frame(e, competitor)
                if frame:
                    out.append(error(rid, f"re-run ({step}): the competitor's code {what}: {e['what']} (at {frame})",
                                     where))
        if step == "predict":
            for e in events.get("import", [])[:5]:
                if e["what"] == "task1" or e["what"].startswith("task1."):
                    out.append(error(rid, f"re-run (predict): Task 2 imported {e['what']}{at(e)}: Task 1 and "
                                     "Task 2 are separate models", where))
        for e in events.get("introspect", [])[:20]:
            frame = _competitor_frame(e, competitor)
            if frame:
                out.append(error(rid, f"re-run ({step}): the competitor's code reached other frames or objects' "
                                 f"internals: {e['what']} (at {frame})", where))
        seccomp = res.get("seccomp")
        if isinstance(seccomp, dict) and not seccomp.get("ok") and res.get("record") is not None:
            out.append(warning(rid, f"re-run ({step}): no seccomp filter ({str(seccomp.get('note'))[:200]}): new "
                               "processes and programs were reported by the audit hook only, not refused by the "
                               "kernel", where))
        for why in res.get("tampered") or []:
            out.append(error(rid, f"re-run ({step}): the run-time evidence was tampered with: {why}", where))
    return out
