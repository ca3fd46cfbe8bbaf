"""Project conventions for task2/ held by a test: no task1, no pretrained-model library, safe loading."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "task2").glob("*.py"))
BANNED = {"task1", "transformers", "sentence_transformers", "timm", "open_clip", "clip", "huggingface_hub",
          "tokenizers", "pandas", "fuxictr"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_task2_sources_import_no_banned_module():
    assert SOURCES, "task2/*.py not found"
    for path in SOURCES:
        bad = _imports(path) & BANNED
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_torch_load_only_with_weights_only():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                    getattr(node.func.value, "id", None) == "torch":
                kws = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kws and getattr(kws["weights_only"], "value", None) is True, \
                    f"{path.name}:{node.lineno} torch.load without weights_only=True"


def test_importing_task2_pulls_in_no_banned_module():
    code = ("import sys, task2.cli, task2.train, task2.predict, task2.data, task2.model; "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(BANNED)!r}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
