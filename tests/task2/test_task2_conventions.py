"""Project conventions for task2/ held by a test: nothing the rules ban is loaded at run time, safe loading."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "task2").glob("*.py"))
# Which imports Task 2 may not make is the rules' business (T2-NO-PRETRAINED, NO-ENSEMBLE-TREE and T3-DISJOINT,
# which tests/harness/test_rules.py runs on packages of this code); here, what importing task2 loads at run time.


def test_torch_load_only_with_weights_only():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                    getattr(node.func.value, "id", None) == "torch":
                kws = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kws and getattr(kws["weights_only"], "value", None) is True, \
                    f"{path.name}:{node.lineno} torch.load without weights_only=True"


def test_importing_task2_pulls_in_nothing_the_rules_ban():
    """At run time, not only in the source: importing every task2 module loads no pretrained-model library,
    no tree or ensemble library and nothing of task1 (the lists are the rules' own)."""
    code = ("import sys, torch; before = set(sys.modules); "  # torch loads torch.hub itself
            "import task2.cli, task2.train, task2.predict, task2.data, task2.model, task2.din, task2.plain; "
            "from referee.rules.code_rules import BANNED, PRETRAINED; from referee.inspection.pysource import matches; "
            "print(sorted(m for m in set(sys.modules) - before if matches(m, PRETRAINED + BANNED + ('task1',))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
