"""Rules judged on the results of `harness verify --rerun predict|full` (see harness.rules.rerun)."""

from __future__ import annotations

from harness.errors import error, warning
from harness.rules import rule
from harness.rules.rerun import CUDA_TOLERANCE


def _failed_run(rid: str, res: dict, where: str) -> list:
    if res.get("skipped"):
        return [error(rid, f"not run: {res['skipped']}", where)]
    if res.get("timed_out"):
        return [error(rid, f"`{res.get('command')}` ran past the time limit ({res.get('seconds')} s)", where)]
    if res.get("rc") != 0:
        tail = " | ".join(str(res.get("log_tail", "")).splitlines()[-3:])
        return [error(rid, f"`{res.get('command')}` exited {res.get('rc')}: {tail[:500]}", where)]
    return []


def _origin_findings(rid: str, res: dict, where: str) -> list:
    out = []
    for name, info in (res.get("origins") or {}).items():
        if isinstance(info, dict) and not info.get("inside"):
            out.append(error(rid, f"re-run imported {name} from {info.get('file')}, not from the package copy",
                             where))
    return out


@rule("RERUN-PREDICT", "the package's own code, run on a copy, re-computes prediction.csv byte for byte on "
      "the CPU (within 1e-5 per score on CUDA)", mode="predict")
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
    if res.get("comparison", {}).get("device", "cpu").startswith("cuda") and cmp.get("within_tolerance"):
        out.append(warning(rid, f"not byte-identical on CUDA but within {CUDA_TOLERANCE:g}: {detail}", where))
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
