"""Record the expected AUCs of the `tiny` pipeline: run deliberately, say why in the commit.

    PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 python tests/regression/record.py

Runs the same pipeline as tests/regression/test_pipeline.py and writes tests/regression/expected.json:
the AUCs, the artifacts' sha256 and the fingerprint of the machine that recorded them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pipeline_args import ARTIFACTS, PIPELINE_ARGS, fingerprint, run_pipeline  # noqa: E402

from core.io import sha256_file  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_pipeline(Path(tmp) / "run")
        hashes = {rel: sha256_file(Path(tmp) / "run" / rel) for rel in ARTIFACTS}
    expected = {
        "args": PIPELINE_ARGS,
        "machine": fingerprint(),  # on this fingerprint the test demands these AUCs and hashes exactly
        "sha256": hashes,
        "auc": {"valid": result["auc"]["ours"]["valid"], "test": result["auc"]["ours"]["test"]},
        "oracle": result["auc"]["oracle"],
        "popularity": result["auc"]["popularity"],
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main()
