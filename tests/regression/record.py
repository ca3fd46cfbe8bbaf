"""Record the expected AUCs of the `tiny` pipeline: run deliberately, say why in the commit.

    PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 python tests/regression/record.py

Runs the same pipeline as tests/regression/test_pipeline.py and writes tests/regression/expected.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pipeline_args import PIPELINE_ARGS, run_pipeline  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_pipeline(Path(tmp) / "run")
    expected = {
        "args": PIPELINE_ARGS,
        "auc": {"valid": result["auc"]["ours"]["valid"], "test": result["auc"]["ours"]["test"]},
        "oracle": result["auc"]["oracle"],
        "popularity": result["auc"]["popularity"],
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main()
