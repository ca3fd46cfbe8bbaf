"""`harness score`: the competition's scoring, after validation.

The scoring container reads prediction.csv against ground_truth.csv and reports `AUC_Task1`,
`AUC_Task2` and `AUC_Task1&2`, with 0.0 for a column the prediction does not have.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl

from core.challenge import SCORE_COLUMNS
from core.errors import UserError, exit_code_for
from core.metrics import auc
from core.schemas import validate_frame
from core.validate import check_prediction_ids, read_table


def score(prediction: str | Path, truth: str | Path) -> dict:
    prediction, truth = Path(prediction), Path(truth)
    for p in (prediction, truth):
        if not p.is_file():
            raise UserError("no such file", path=p)
    pred, problem = read_table(prediction, "prediction")
    if problem:
        raise UserError(problem.message, path=prediction, exit_code=1)
    gt, problem = read_table(truth, "ground_truth")
    if problem:
        raise UserError(problem.message, path=truth)
    gt_findings = validate_frame(gt, "ground_truth", str(truth))
    if any(f.severity == "error" for f in gt_findings):
        raise UserError(f"the ground truth is invalid: {gt_findings[0].message}", path=truth)
    findings = validate_frame(pred, "prediction", str(prediction))
    findings += check_prediction_ids(pred, gt, str(prediction), str(truth))
    scores = {}
    ok = exit_code_for(findings) == 0
    for col in SCORE_COLUMNS:
        value = 0.0
        if ok and col in pred.columns:
            value = auc(gt["label"].to_numpy(), pred[col].to_numpy())
        scores[f"AUC_{col}"] = value
    code = exit_code_for(findings)
    return {"ok": code == 0, "exit_code": code, "scores": scores, "findings": [f.to_dict() for f in findings]}


@click.command("score")
@click.argument("prediction", type=click.Path(path_type=Path))
@click.option("--truth", type=click.Path(path_type=Path), required=True, help="ground_truth.csv (ID,label).")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON document on stdout.")
def score_cmd(prediction: Path, truth: Path, as_json: bool) -> int:
    """Validate, then report AUC_Task1, AUC_Task2, AUC_Task1&2 as the competition's scorer does."""
    doc = score(prediction, truth)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        for f in doc["findings"]:
            click.echo(f"[{f['id']}] {f['severity']}: {f['path']}: {f['message']}", err=True)
        for name, value in doc["scores"].items():
            click.echo(f"{name}: {value}")
    return doc["exit_code"]
