"""Every rule of referee.rules on a compliant package and on packages that break it.

Packages come from tests/harness/conftest.py (built with `harness package` from runs that pkgkit
writes); a test copies one, breaks it, re-signs the manifest when the breach is not about the manifest,
and asks only the rule under test (`rule_findings`). Nothing here ever unpickles: the pickle tests
check that the file a hostile pickle would create never appears.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import struct

import numpy as np
import polars as pl
import pytest
from safetensors.torch import load_file, save_file

from core.challenge import DATASET_DIR
from pkgkit import edit_json, edit_manifest, errors_of, repredict, resign, rule_findings

CKPT = "outputs/task2/model.safetensors"


class _CreatesFile:
    """Unpickling this calls open(path, "w"): it creates the file. Pickling it runs nothing."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _ids(findings):
    return [f.id for f in findings]


def _add_tensors(pkg, extra: dict):
    state = load_file(str(pkg / CKPT))
    state.update(extra)
    save_file(state, str(pkg / CKPT))


# ---------------------------------------------------------------------------------------------
# every rule holds on the compliant packages


@pytest.mark.parametrize("which", ["pkg1", "pkg2", "pkg3"])
def test_compliant_packages_pass_every_rule(which, request, tiny_data):
    from referee.rules import run_rules
    from referee.inspection.context import PackageContext

    pkg = request.getfixturevalue(which)
    ctx = PackageContext(pkg, data=tiny_data)
    findings, status = run_rules(ctx)
    assert errors_of(findings) == []
    assert not [f for f in findings if "internal error" in f.message]
    track = int(which[-1])
    expected_skips = {"RERUN-PREDICT", "RERUN-FULL", "RERUN-SANDBOX"}
    expected_skips |= {1: {"T2-TRACK2-EMBEDDINGS"}, 2: {"T1-TRACK1-BASELINE", "T1-ITEM-INFO", "T1-OPEN-SOURCE",
                                                        "T3-DISJOINT"},
                       3: {"T1-TRACK1-BASELINE", "T2-TRACK2-EMBEDDINGS"}}[track]
    assert {r for r, s in status.items() if s == "skipped"} == expected_skips
    # the only warning on a fresh package from a working tree is the dirty-tree note
    assert [f for f in findings if not (f.id == "REPRO-RECORD" and f.message.startswith("packaged from a dirty tree"))
            ] == []


# ---------------------------------------------------------------------------------------------
# PKG-MANIFEST


def test_manifest_extra_file(p2):
    (p2 / "notes.txt").write_text("hello")
    found, status = rule_findings(p2, "PKG-MANIFEST")
    assert status == "error"
    assert errors_of(found) == ["notes.txt: extra file, not in the manifest"]


def test_manifest_missing_file(p2):
    (p2 / "outputs/task2/metrics.jsonl").unlink()
    found, _ = rule_findings(p2, "PKG-MANIFEST")
    assert errors_of(found) == ["outputs/task2/metrics.jsonl: listed in the manifest but missing from the package"]


def test_manifest_tampered_prediction_value(p2):
    lines = (p2 / "prediction.csv").read_text().splitlines()
    rid, score = lines[5].split(",")
    lines[5] = f"{rid},{1.0 - float(score):.6f}"
    (p2 / "prediction.csv").write_text("\n".join(lines) + "\n")
    found, _ = rule_findings(p2, "PKG-MANIFEST")
    assert any(e.startswith("prediction.csv: ") and "changed after packaging" in e for e in errors_of(found))
    upload, _ = rule_findings(p2, "PRED-UPLOAD")
    assert "prediction.zip: prediction.csv inside the zip differs from prediction.csv" in errors_of(upload)
    assert any("edited after prediction" in e for e in errors_of(upload))


def test_manifest_absent_or_required_role_missing(p2):
    (p2 / "LICENSE").unlink()
    resign(p2)
    found, _ = rule_findings(p2, "PKG-MANIFEST")
    assert errors_of(found) == ["MANIFEST.json: no file with role license (LICENSE); track 2 needs it"]
    (p2 / "MANIFEST.json").unlink()
    found, _ = rule_findings(p2, "PKG-MANIFEST", track=2)
    assert errors_of(found) == ["MANIFEST.json: MANIFEST.json is missing; re-run `harness package`"]


# ---------------------------------------------------------------------------------------------
# PKG-HYGIENE


def test_hygiene_symlink_pointing_outside(p2):
    os.symlink("/etc/passwd", p2 / "outputs/task2/notes.txt")
    os.symlink("../prediction.csv", p2 / "outputs/pred_link.csv")
    found, _ = rule_findings(p2, "PKG-HYGIENE")
    errs = errors_of(found)
    assert "outputs/task2/notes.txt: symlink to '/etc/passwd' (OUTSIDE the package); packages hold regular " \
           "files only" in errs
    assert any(e.startswith("outputs/pred_link.csv: symlink") and "(inside the package)" in e for e in errs)


@pytest.mark.parametrize("bad,why", [("/etc/passwd", "is absolute"), ("../outside.txt", "climbs out with '..'")])
def test_hygiene_unsafe_manifest_path(p2, bad, why):
    edit_manifest(p2, lambda m: m["files"].update({bad: {"sha256": "0" * 64, "size": 1, "role": "doc"}}))
    found, _ = rule_findings(p2, "PKG-HYGIENE")
    assert errors_of(found) == [f"{bad}: manifest path {why}: packages list relative paths inside themselves"]
    manifest_found, _ = rule_findings(p2, "PKG-MANIFEST")  # and the manifest check never touches that path
    assert not any(bad in e for e in errors_of(manifest_found))


def test_hygiene_pickles_are_reported_and_never_loaded(p2, tmp_path, tiny_data):
    from referee.verify import verify_package

    marker = tmp_path / "PWNED"
    (p2 / "outputs/task2/extra.pkl").write_bytes(pickle.dumps(_CreatesFile(marker), protocol=4))
    (p2 / "outputs/task2/stats.json").write_bytes(pickle.dumps(_CreatesFile(marker), protocol=0))  # text pickle
    (p2 / "outputs/task2/scaler.joblib").write_bytes(b"joblib-ish bytes")
    np.save(p2 / "outputs/task2/objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    resign(p2)
    report = verify_package(p2, data=tiny_data)
    hygiene = [f"{f.path}: {f.message.split(';')[0]}" for f in report.findings if f.id == "PKG-HYGIENE"]
    assert sorted(hygiene) == [
        "outputs/task2/extra.pkl: pickle/joblib file (by its name)",
        "outputs/task2/objects.npy: numpy object array: np.load would unpickle it",
        "outputs/task2/scaler.joblib: pickle/joblib file (by its name)",
        "outputs/task2/stats.json: pickle (its bytes decode as pickle opcodes ending in STOP)",
    ]
    assert report.exit_code == 1
    assert not marker.exists()


def test_pickles_inside_zips_are_reported_and_never_loaded(p3, tmp_path, tiny_data):
    """A reducer .npz whose member only np.load's unpickler could read is PKG-HYGIENE's; a zip anywhere
    else (here one holding a pickle) is T2-SINGLE-MODEL's, and neither is decompressed into Python."""
    import zipfile

    from referee.verify import verify_package

    marker = tmp_path / "PWNED"
    np.savez(p3 / "outputs/task1/reducer.npz", w=np.zeros(3), meta=np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(p3 / "outputs/task2/extra.zip", "w") as zf:
        zf.writestr("weights.pkl", pickle.dumps(_CreatesFile(marker), protocol=4))
    resign(p3)
    report = verify_package(p3, data=tiny_data)
    found = {(f.id, f.path) for f in report.findings if f.severity == "error"}
    assert ("PKG-HYGIENE", "outputs/task1/reducer.npz") in found
    hygiene = [f.message for f in report.findings if f.id == "PKG-HYGIENE" and f.path == "outputs/task1/reducer.npz"]
    assert hygiene and hygiene[0].startswith("npz holding what np.load could only unpickle: meta")
    assert ("T2-SINGLE-MODEL", "outputs/task2/extra.zip") in found
    assert report.exit_code == 1
    assert not marker.exists()


def test_hygiene_compiled_code_and_size(p2, monkeypatch):
    from referee.rules import package_rules

    (p2 / "task2/fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF" + b"\0" * 64)
    resign(p2)
    monkeypatch.setattr(package_rules, "MAX_FILE_BYTES", 10_000)
    found, _ = rule_findings(p2, "PKG-HYGIENE")
    errs = errors_of(found)
    assert "task2/fast.cpython-311-x86_64-linux-gnu.so: compiled code cannot be reviewed; ship the source" in errs
    assert any(e.startswith(CKPT) and "over the 10,000-byte limit per file" in e for e in errs)


# ---------------------------------------------------------------------------------------------
# PKG-LICENSE


def test_license_apache_mit_and_other(p2, tmp_path):
    from referee.inspection.licenses import license_text

    assert rule_findings(p2, "PKG-LICENSE")[1] == "ok"
    (p2 / "LICENSE").write_text(license_text("MIT", year=2025, holder="Team X"))
    resign(p2)
    found, _ = rule_findings(p2, "PKG-LICENSE")
    assert [f.message for f in found] == ["LICENSE is MIT but pyproject.toml declares 'Apache-2.0'"]
    assert errors_of(found) == []
    (p2 / "LICENSE").write_text("Copyright 2025 Team X. All rights reserved.\n")
    resign(p2)
    found, _ = rule_findings(p2, "PKG-LICENSE")
    assert errors_of(found) == ["LICENSE: neither the MIT nor the Apache-2.0 licence text"]


# ---------------------------------------------------------------------------------------------
# PRED-SCHEMA, PRED-TRACK-COLUMN, PRED-UPLOAD


def test_prediction_compliant_with_and_without_data(pkg2, tiny_data):
    assert rule_findings(pkg2, "PRED-SCHEMA", data=tiny_data) == ([], "ok")
    found, status = rule_findings(pkg2, "PRED-SCHEMA")
    assert status == "warning" and [f.message for f in found] == ["not compared with the test IDs: pass --data DATA_DIR"]


def test_prediction_nan_score(p2, tiny_data):
    repredict(p2, lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(float("nan")).otherwise(pl.col("Task2")).alias("Task2")))
    found, _ = rule_findings(p2, "PRED-SCHEMA", data=tiny_data)
    errs = errors_of(found)
    assert errs and all(e.startswith("prediction.csv: ") and "column Task2" in e for e in errs)
    assert any("Task2 scores must be finite and in [0, 1] (1 row(s) fail; first: row 3: nan)" in e for e in errs)


def test_prediction_out_of_range_score(p2, tiny_data):
    repredict(p2, lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(1.5).otherwise(pl.col("Task2")).alias("Task2")))
    errs = errors_of(rule_findings(p2, "PRED-SCHEMA", data=tiny_data)[0])
    assert len(errs) == 1 and "row 0: 1.5" in errs[0]


def test_prediction_wrong_row_count(p2, tiny_data):
    repredict(p2, lambda f: f.head(f.height - 1))
    found, _ = rule_findings(p2, "PRED-SCHEMA", data=tiny_data)
    assert errors_of(found) == ["prediction.csv: [prediction.row_count] 1,999 rows, but the test file has 2,000"]


def test_prediction_ids_out_of_order(p2, tiny_data):
    repredict(p2, lambda f: f.with_columns(pl.col("ID").reverse()))
    errs = errors_of(rule_findings(p2, "PRED-SCHEMA", data=tiny_data)[0])
    assert any("ID must be 0..n-1 ascending" in e for e in errs)


def test_track_column_mismatch(p2):
    assert rule_findings(p2, "PRED-TRACK-COLUMN")[1] == "ok"
    found, _ = rule_findings(p2, "PRED-TRACK-COLUMN", track=1)
    assert errors_of(found) == [
        "MANIFEST.json: --track 1, but the package was built for track 2",
        "prediction.csv: track 1 is scored from column 'Task1', but the columns are ID, Task2",
        "outputs/prediction/predict.json: predict.json says track 2, the package is checked as track 1",
        "outputs/prediction/predict.json: predict.json wrote column 'Task2', track 1 needs 'Task1'",
    ]
    repredict(p2, lambda f: f.rename({"Task2": "Task1"}))
    found, _ = rule_findings(p2, "PRED-TRACK-COLUMN")
    assert errors_of(found) == ["prediction.csv: track 2 is scored from column 'Task2', but the columns are ID, Task1"]


def test_upload_zip_with_extra_member(p2):
    import zipfile

    with zipfile.ZipFile(p2 / "prediction.zip", "a") as zf:
        zf.writestr("notes/readme.txt", "hi")
    resign(p2)
    found, _ = rule_findings(p2, "PRED-UPLOAD")
    assert errors_of(found) == ["prediction.zip: must hold prediction.csv alone at its root; holds "
                                "['prediction.csv', 'notes/readme.txt']"]


# ---------------------------------------------------------------------------------------------
# REPRO-SEEDING, REPRO-RECORD


def test_seeding_recorded_and_on(p2):
    edit_json(p2 / "outputs/task2/run.json", lambda d: d["seeding"].update(cudnn_benchmark=True, pythonhashseed=None))
    resign(p2)
    found, status = rule_findings(p2, "REPRO-SEEDING")
    assert status == "warning"
    assert [f.message for f in found] == [
        "the Task 2 run ran without the deterministic flags: cudnn_benchmark=True",
        "the Task 2 run ran without PYTHONHASHSEED set before Python started (reproduce.sh exports it)"]
    edit_json(p2 / "outputs/task2/run.json", lambda d: d.pop("seeding"))
    (p2 / "reproduce.sh").write_text("#!/bin/sh\npython -m task2 train\n")
    resign(p2)
    found, _ = rule_findings(p2, "REPRO-SEEDING")
    assert errors_of(found) == ["outputs/task2/run.json: the Task 2 run records no seeding flags "
                                "(core.seeding.seed_everything)"]
    assert "reproduce.sh: does not set PYTHONHASHSEED before Python starts" in [f"{f.path}: {f.message}" for f in found]


def test_record_consistency(p2, tiny_copy):
    assert rule_findings(p2, "REPRO-RECORD", data=tiny_copy)[1] in ("ok", "warning")
    edit_manifest(p2, lambda m: (m["metrics"].update(task2_best_valid_auc=0.99), m.pop("environment")))
    pl.read_parquet(tiny_copy / DATASET_DIR / "valid.parquet").head(100).write_parquet(tiny_copy / DATASET_DIR / "valid.parquet")
    errs = errors_of(rule_findings(p2, "REPRO-RECORD", data=tiny_copy)[0])
    assert "MANIFEST.json: no environment fingerprint (python, torch, packages)" in errs
    assert "MANIFEST.json: task2_best_valid_auc 0.99 differs from run.json's 0.51234" in errs
    assert any("valid.parquet: valid.parquet under --data differs from the one the package was built from" in e
               for e in errs)


# ---------------------------------------------------------------------------------------------
# T2-CHECKPOINT-FORMAT


def _swap_checkpoint(pkg, name: str, data: bytes):
    (pkg / CKPT).unlink()
    (pkg / f"outputs/task2/{name}").write_bytes(data)
    edit_manifest(pkg, lambda m: m["files"].pop(CKPT))
    resign(pkg, roles={f"outputs/task2/{name}": "task2_checkpoint"})


def test_checkpoint_raw_pickle_is_never_loaded(p2, tmp_path):
    marker = tmp_path / "PWNED"
    _swap_checkpoint(p2, "model.pt", pickle.dumps({"w": _CreatesFile(marker)}, protocol=2))
    found, _ = rule_findings(p2, "T2-CHECKPOINT-FORMAT")
    assert errors_of(found) == ["outputs/task2/model.pt: a raw pickle: loading it could run any code; save the "
                                "state dict with safetensors"]
    assert not marker.exists()


def test_checkpoint_torch_zip_with_unsafe_global_is_never_loaded(p2, tmp_path):
    import io

    import torch

    marker = tmp_path / "PWNED"
    buf = io.BytesIO()
    torch.save({"head.weight": torch.zeros(2), "x": _CreatesFile(marker)}, buf)
    _swap_checkpoint(p2, "model.pt", buf.getvalue())
    found, _ = rule_findings(p2, "T2-CHECKPOINT-FORMAT")
    errs = errors_of(found)
    assert len(errs) == 1 and "globals outside torch's weights-only set" in errs[0]
    assert "io.open" in errs[0] or "builtins.open" in errs[0]
    assert not marker.exists()


def test_checkpoint_torch_zip_state_dict_is_accepted(p2):
    import io

    import torch

    buf = io.BytesIO()
    torch.save(load_file(str(p2 / CKPT)), buf)
    _swap_checkpoint(p2, "model.pt", buf.getvalue())
    found, status = rule_findings(p2, "T2-CHECKPOINT-FORMAT")
    assert status == "warning" and errors_of(found) == []
    assert rule_findings(p2, "T2-SINGLE-MODEL")[1] == "ok"  # same tensors as the declared class


def test_checkpoint_broken_header(p2):
    data = (p2 / CKPT).read_bytes()
    (p2 / CKPT).write_bytes(struct.pack("<Q", 10**6) + data[8:200])
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-CHECKPOINT-FORMAT")[0])
    assert errs == [f"{CKPT}: neither safetensors nor a torch weights-only zip"]


# ---------------------------------------------------------------------------------------------
# T2-SINGLE-MODEL


def test_second_model_hidden_in_checkpoint(p2):
    state = load_file(str(p2 / CKPT))
    _add_tensors(p2, {f"shadow.{k}": v.clone() for k, v in state.items()})
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert len(errs) == 1
    assert f"{len(state)} tensor(s) the declared class does not have" in errs[0] and "a second model" in errs[0]
    assert "rebuilt with the verifier's identical task2" in errs[0]


def test_second_model_hidden_and_manifest_claims_it(p2):
    state = load_file(str(p2 / CKPT))
    extra = {"shadow.head.weight": state["head.weight"].clone()}
    _add_tensors(p2, extra)
    edit_manifest(p2, lambda m: m["task2"]["expected_state"].update({"shadow.head.weight": ["F32", list(
        extra["shadow.head.weight"].shape)]}))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert "MANIFEST.json: the manifest's expected_state differs from the declared class rebuilt from " \
           "model_args.json" in errs


def test_second_model_found_when_task2_code_differs(p2):
    """The package's task2 is not the verifier's: the manifest's expected state is the submitter's word and is
    never the reference; static verify says the layout is unproven, the re-run's sandbox-built layout decides."""
    with open(p2 / "task2/model.py", "a") as f:
        f.write("\n# edited by the submitter\n")
    shadow = load_file(str(p2 / CKPT))["head.weight"].clone()
    _add_tensors(p2, {"ema.head.weight": shadow})
    edit_manifest(p2, lambda m: m["task2"]["expected_state"].update({"ema.head.weight": ["F32", list(shadow.shape)]}))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert errs == [f"{CKPT}: the package's task2 code differs from the verifier's: the declared class's layout is "
                    "not proven (the manifest's is the submitter's word); run `harness verify --rerun predict`, "
                    "which builds it from the package's code in the sandbox"]
    declared = {k: v for k, v in json.loads((p2 / "MANIFEST.json").read_text())["task2"]["expected_state"].items()
                if k != "ema.head.weight"}
    rerun = {"mode": "predict", "predict": {"rc": 0, "declared_state": declared, "strict_load": {"ok": True}}}
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL", rerun=rerun)[0])
    assert errs[0] == (f"{CKPT}: 1 tensor(s) the declared class does not have (first: ema.head.weight): a second "
                       "model's weights? (SASRecDCN, built from the package's code in the re-run's sandbox)")
    assert errs[1] == ("MANIFEST.json: the manifest's expected_state differs from the declared class rebuilt from "
                       "model_args.json")


def test_two_checkpoints(p2):
    (p2 / "outputs/task2/model_ema.safetensors").write_bytes((p2 / CKPT).read_bytes())
    resign(p2, roles={"outputs/task2/model_ema.safetensors": "task2_checkpoint"})
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert errs == ["outputs/task2/model_ema.safetensors: 2 Task 2 checkpoints (outputs/task2/model.safetensors, "
                    "outputs/task2/model_ema.safetensors): Task 2 is a single model"]


def test_stray_weights_file(p2):
    np.savez(p2 / "outputs/prediction/blend.npz", w=np.ones(3))
    (p2 / "outputs/prediction/weights.dat").write_bytes((p2 / CKPT).read_bytes())  # safetensors, renamed
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert [e.split(":")[0] for e in errs] == ["outputs/prediction/blend.npz", "outputs/prediction/weights.dat"]
    assert all("a weights file besides the one Task 2 checkpoint" in e for e in errs)


def test_bytes_outside_tensors_and_missing_tensor(p2):
    """safetensors' own loader refuses bytes no tensor claims; a missing tensor is a layout difference."""
    state = load_file(str(p2 / CKPT))
    with open(p2 / CKPT, "ab") as f:
        f.write(b"\0" * 4096)
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-CHECKPOINT-FORMAT")[0])
    assert len(errs) == 1 and errs[0].startswith(f"{CKPT}: not a valid safetensors file: ")
    assert "not fully covered" in errs[0]
    state.pop("head.bias")
    save_file(state, str(p2 / CKPT))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-SINGLE-MODEL")[0])
    assert len(errs) == 1 and "1 tensor(s) of the declared class missing (first: head.bias)" in errs[0]


# ---------------------------------------------------------------------------------------------
# T2-FEATURES


def test_features_extra_input_file(p2):
    edit_json(p2 / "outputs/task2/run.json", lambda d: d["inputs"].update(
        item_feature={"path": "x/item_feature.parquet", "sha256": "0" * 64}))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-FEATURES")[0])
    assert errs == ["outputs/task2/run.json: Task 2 trained on more than the challenge's features: inputs "
                    "item_feature beyond item_info, train, valid"]


def test_features_user_embedding_in_checkpoint(p2, tiny_data):
    import torch

    n_users = int(pl.read_parquet(tiny_data / DATASET_DIR / "train.parquet")["user_id"].max())
    _add_tensors(p2, {"uid_table.weight": torch.zeros(n_users + 1, 4), "user_emb.weight": torch.zeros(8, 4)})
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-FEATURES", data=tiny_data)[0])
    assert f"{CKPT}: tensor user_emb.weight [8, 4]: named like a user embedding" in errs
    assert f"{CKPT}: tensor uid_table.weight [{n_users + 1}, 4]: named like a user embedding" in errs
    assert f"{CKPT}: tensor uid_table.weight has {n_users + 1:,} rows: one per user id in train.parquet" in errs


def test_features_forward_takes_user_id(p2):
    path = p2 / "task2/model.py"
    src = path.read_text()
    tree = ast.parse(src)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SASRecDCN")
    fwd = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    first = fwd.args.args[1]  # the argument after self
    lines = src.splitlines(keepends=True)
    line = lines[first.lineno - 1]
    lines[first.lineno - 1] = line[:first.col_offset] + "user_id, " + line[first.col_offset:]
    path.write_text("".join(lines))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-FEATURES")[0])
    assert errs == ["task2/model.py: SASRecDCN.forward takes user_id: user_id is not an allowed input feature"]


def test_features_user_config_key_and_mention(p2):
    edit_json(p2 / "outputs/task2/model_args.json", lambda d: d["config"].update(n_users=5000))
    (p2 / "task2/gauc.py").write_text("def gauc(frame):\n    return frame.group_by('user_id')\n")
    resign(p2)
    found, _ = rule_findings(p2, "T2-FEATURES")
    assert errors_of(found) == ["outputs/task2/model_args.json: model config key 'n_users': the model embeds users"]
    assert [f"{f.path}: {f.message}" for f in found if f.severity == "warning"] == [
        "task2/gauc.py: uses the name user_id (lines 2): grouping by user is allowed, embedding it is not"]


# ---------------------------------------------------------------------------------------------
# T1-TRACK1-BASELINE


def test_track1_baseline(p1):
    args = p1 / "outputs/task2/model_args.json"
    edit_json(args, lambda d: d["config"].update(net_dropout=0.2, embedding_regularizer=1e-5))
    resign(p1)
    assert rule_findings(p1, "T1-TRACK1-BASELINE") == ([], "ok")
    edit_json(args, lambda d: d["config"].update(embedding_dim=32, dnn_units=[64]))
    resign(p1)
    errs = errors_of(rule_findings(p1, "T1-TRACK1-BASELINE")[0])
    assert [e.split(" = ")[0] for e in errs] == ["outputs/task2/model_args.json: embedding_dim",
                                                "outputs/task2/model_args.json: dnn_units"]
    edit_json(args, lambda d: d["config"].update(embedding_dim=64, dnn_units=[1024, 512, 256]))
    edit_json(p1 / "outputs/task2/config.json", lambda d: d["train"].update(epochs=3, lr_decay=0.5))
    resign(p1)
    found, status = rule_findings(p1, "T1-TRACK1-BASELINE")
    assert status == "warning" and [f"{f.path}: {f.message}" for f in found] == [
        "outputs/task2/config.json: training differs from the baseline's: epochs = 3 (baseline 100); lr_decay = "
        "0.5 (baseline 0.1); Track 1 may tune only learning_rate and batch_size"]
    edit_json(args, lambda d: d.update(model_class="SASRecDCN"))
    resign(p1)
    errs = errors_of(rule_findings(p1, "T1-TRACK1-BASELINE")[0])
    assert errs == ["outputs/task2/model_args.json: Track 1's CTR model is the baseline DIN, this package trained "
                    "SASRecDCN"]


def test_track1_baseline_matches_the_din_defaults():
    """The rule's statement of the baseline and task2's DINConfig defaults must not drift apart."""
    import dataclasses

    from referee.rules.model_rules import BASELINE_DIN, TRACK1_DATA_DERIVED, TRACK1_TUNABLE_MODEL
    from task2.din import DINConfig

    defaults = {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default)
                for f in dataclasses.fields(DINConfig)}
    assert {k: defaults[k] for k in BASELINE_DIN} == BASELINE_DIN
    assert set(defaults) == set(BASELINE_DIN) | set(TRACK1_TUNABLE_MODEL) | set(TRACK1_DATA_DERIVED)


def test_track1_baseline_training_matches_task2s():
    from referee.rules.model_rules import BASELINE_DIN_TRAIN, TRACK1_TUNABLE_TRAIN
    from task2.train import DIN_BASELINE_TRAIN, TrainConfig

    resolved = {**TrainConfig().__dict__, **DIN_BASELINE_TRAIN}
    assert {k: resolved[k] for k in BASELINE_DIN_TRAIN} == BASELINE_DIN_TRAIN
    assert set(DIN_BASELINE_TRAIN) - set(BASELINE_DIN_TRAIN) == set(TRACK1_TUNABLE_TRAIN)


# ---------------------------------------------------------------------------------------------
# T2-TRACK2-EMBEDDINGS and T1-ITEM-INFO


def test_track2_embeddings(p2, tiny_data):
    assert rule_findings(p2, "T2-TRACK2-EMBEDDINGS", data=tiny_data) == ([], "ok")
    found, status = rule_findings(p2, "T2-TRACK2-EMBEDDINGS")
    assert status == "warning" and "pass --data" in found[0].message
    state = load_file(str(p2 / CKPT))
    state["items.item_emb_d128"][7, 3] += 1e-3
    save_file(state, str(p2 / CKPT))
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-TRACK2-EMBEDDINGS", data=tiny_data)[0])
    assert errs == [f"{CKPT}: items.item_emb_d128 differs from the provided item_info in 1 of 401 rows"]


def test_track2_embeddings_trained_on_other_item_info(pkg3, tiny_data):
    errs = errors_of(rule_findings(pkg3, "T2-TRACK2-EMBEDDINGS", data=tiny_data, track=2)[0])
    assert errs[0].startswith("outputs/task2/run.json: Task 2 trained on an item_info.parquet that is not the "
                              "provided one")
    assert errs[1] == "outputs/task1/item_info.parquet: the package ships an item_info.parquet that differs " \
                      "from the provided one"
    assert errs[2] == f"{CKPT}: items.item_emb_d128 differs from the provided item_info in 400 of 401 rows"


def test_task1_item_info_link(p3, tiny_data):
    assert rule_findings(p3, "T1-ITEM-INFO", data=tiny_data) == ([], "ok")
    (p3 / "outputs/task1/item_info.parquet").write_bytes((tiny_data / DATASET_DIR / "item_info.parquet").read_bytes())
    resign(p3)
    errs = errors_of(rule_findings(p3, "T1-ITEM-INFO", data=tiny_data)[0])
    assert len(errs) == 2
    assert errs[0].startswith("outputs/task2/run.json: Task 2 trained on another item_info")
    assert errs[1] == f"{CKPT}: items.item_emb_d128 differs from Task 1's item_info in 400 of 401 rows"


def test_task1_item_info_schema(p3):
    path = p3 / "outputs/task1/item_info.parquet"
    frame = pl.read_parquet(path)
    emb = frame["item_emb_d128"].to_numpy().copy()
    emb[0, 0] = 1.0
    frame.with_columns(pl.Series("item_emb_d128", emb, dtype=pl.Array(pl.Float64, 128))).write_parquet(path)
    resign(p3)
    errs = errors_of(rule_findings(p3, "T1-ITEM-INFO")[0])
    assert any("[data.row0_zero] column item_emb_d128: row 0 is padding" in e for e in errs)


# ---------------------------------------------------------------------------------------------
# T1-OPEN-SOURCE


@pytest.mark.parametrize("model,severity,needle", [
    ({"id": "acme/closed-vision", "revision": "1", "license": "unknown (not stated in the model files)"},
     "error", "licence 'unknown (not stated in the model files)' is unknown"),
    ({"id": "acme/nc-model", "revision": "1", "license": "CC-BY-NC-4.0"}, "error", "is not an open-source licence"),
    ({"id": "openai/clip-vit-large-patch14", "revision": "1", "license": "Apache-2.0"}, "error",
     "recorded licence Apache-2.0, but the model is released under MIT"),
    ({"id": "acme/open-model", "revision": "1", "license": "MIT"}, "warning", "not in the verifier's licence table"),
    ({"id": "sentence-transformers/all-MiniLM-L6-v2", "license": "Apache-2.0"}, "warning",
     "neither a hub revision nor a content sha256"),
])
def test_task1_open_source(p3, model, severity, needle):
    assert rule_findings(p3, "T1-OPEN-SOURCE") == ([], "ok")
    edit_json(p3 / "outputs/task1/task1.json", lambda d: d["models"].append(dict(model, role="image")))
    resign(p3)
    found, _ = rule_findings(p3, "T1-OPEN-SOURCE")
    assert [(f.severity, needle in f.message) for f in found] == [(severity, True)]


def test_task1_models_not_recorded(p3):
    edit_json(p3 / "outputs/task1/task1.json", lambda d: d.pop("models"))
    resign(p3)
    assert errors_of(rule_findings(p3, "T1-OPEN-SOURCE")[0]) == [
        'outputs/task1/task1.json: task1.json has no "models" list: record every encoder Task 1 used']


# ---------------------------------------------------------------------------------------------
# NO-ENSEMBLE-TREE


@pytest.mark.parametrize("rel,code,module", [
    ("task2/boost_utils.py", "import xgboost as xgb\n", "xgboost"),
    ("task2/boost_utils.py", "from sklearn import ensemble\n", "sklearn.ensemble"),
    ("task2/boost_utils.py", "from sklearn.tree import DecisionTreeClassifier\n", "sklearn.tree"),  # one finding
    ("task2/boost_utils.py", "import importlib\nLIB = 'xg' + 'boost'\nmodel = importlib.import_module(LIB)\n",
     "xgboost"),
    ("task2/boost_utils.py", "def load():\n    return __import__('light' 'gbm')\n", "lightgbm"),
    ("task2/boost_utils.py", "exec('import catboost as cb')\n", "catboost"),
    ("task2/boost_utils.py", "import sklearn as sk\nforest = sk.ensemble.RandomForestClassifier()\n",
     "sklearn.ensemble.RandomForestClassifier"),
    ("task2/helpers/deep/blend.py", "from importlib import import_module\nm = import_module(f'{\"xgboost\"}')\n",
     "xgboost"),
    ("scripts/stack.py", "import lightgbm\n", "lightgbm"),
    ("harness/extra.py", "__import__('sklearn', fromlist=['ensemble'])\n", "sklearn.ensemble"),
])
def test_banned_import_hidden_in_a_helper(p2, rel, code, module):
    assert rule_findings(p2, "NO-ENSEMBLE-TREE")[1] == "ok"
    (p2 / rel).parent.mkdir(parents=True, exist_ok=True)
    (p2 / rel).write_text(code)
    resign(p2)
    found, status = rule_findings(p2, "NO-ENSEMBLE-TREE")
    assert status == "error"
    errs = errors_of(found)
    assert len(errs) == 1 and errs[0].startswith(f"{rel}: line ") and f"imports {module} (" in errs[0]


def test_computed_import_and_tree_model_file(p2):
    """A computed import is an error (CODE-DYNAMIC: it could import anything); a tree model file by content."""
    (p2 / "task2/plugins.py").write_text("import importlib, os\nmod = importlib.import_module(os.environ['X'])\n")
    (p2 / "outputs/task2/booster.txt").write_text("tree\nversion=v4\nnum_class=1\n")
    resign(p2)
    found, _ = rule_findings(p2, "NO-ENSEMBLE-TREE")
    assert [(f.severity, f.path) for f in found] == [("error", "outputs/task2/booster.txt")]
    assert "a LightGBM model file" in found[0].message
    errs = errors_of(rule_findings(p2, "CODE-DYNAMIC")[0])
    assert errs == ["task2/plugins.py: line 1: importlib (import): imports by name or loads modules from files "
                    "(importlib)", "task2/plugins.py: line 2: importlib.import_module (attribute): imports by name or "
                    "loads modules from files (importlib); imports or runs a name computed at run time"]


def test_unparsable_code_is_a_finding(p2):
    (p2 / "task2/broken.py").write_text("def f(:\n")
    resign(p2)
    errs = errors_of(rule_findings(p2, "NO-ENSEMBLE-TREE")[0])
    assert errs == ["task2/broken.py: syntax error at line 1: invalid syntax: code the verifier cannot read "
                    "cannot be reviewed"]


# ---------------------------------------------------------------------------------------------
# T3-DISJOINT, T2-NO-PRETRAINED


@pytest.mark.parametrize("files,chain", [
    ({"task2/bridge.py": "from task1.config import Task1Config\n"}, "task2.bridge -> task1.config"),
    ({"task2/bridge.py": "import scripts.helper\n", "scripts/helper.py": "def f():\n    import task1.models\n"},
     "task2.bridge -> scripts.helper -> task1.models"),
    ({"task1/peek.py": "import importlib\nCTR = importlib.import_module('task2.model')\n"},
     "task1.peek -> task2.model"),
])
def test_disjoint(p3, files, chain):
    assert rule_findings(p3, "T3-DISJOINT") == ([], "ok")
    for rel, code in files.items():
        (p3 / rel).write_text(code)
    resign(p3)
    errs = errors_of(rule_findings(p3, "T3-DISJOINT")[0])
    assert len(errs) == 1 and f": {chain} (line" in errs[0]


@pytest.mark.parametrize("files,needle", [
    ({"task2/encoder.py": "from transformers import AutoModel\n"}, "task2.encoder -> transformers"),
    ({"task2/encoder.py": "import torch\nnet = torch.hub.load('pytorch/vision', 'resnet50')\n"},
     "task2.encoder -> torch.hub.load"),
    ({"task2/encoder.py": "from torchvision import models\n"}, "task2.encoder -> torchvision.models"),
    ({"task2/encoder.py": "from harness import feats\n", "harness/feats.py": "import timm\n"},
     "task2.encoder -> harness.feats -> timm"),
])
def test_no_pretrained(p2, files, needle):
    assert rule_findings(p2, "T2-NO-PRETRAINED") == ([], "ok")
    for rel, code in files.items():
        (p2 / rel).write_text(code)
    resign(p2)
    errs = errors_of(rule_findings(p2, "T2-NO-PRETRAINED")[0])
    assert len(errs) == 1 and f"pretrained-model library: {needle} (line" in errs[0]


# ---------------------------------------------------------------------------------------------
# RERUN-PREDICT, RERUN-FULL: the judgement on re-run results (the re-runs themselves are in
# test_package_verify.py)


def _rerun(predict=None, full=None, mode="predict"):
    return {"mode": mode, "device": "cpu", "auc_tolerance": 0.005, "min_spearman": 0.95, "predict": predict,
            "full": full}


def _ran(**kw):
    return dict({"rc": 0, "command": "python -m task2 predict", "origins": {"task2": {"inside": True}},
                 "comparison": {"identical": True}}, **kw)


@pytest.mark.parametrize("predict,severity,needle", [
    (_ran(), None, None),
    (_ran(comparison={"identical": False, "rows_differing": 3, "max_abs_diff": 0.01, "device": "cpu"}), "error",
     "3 score(s) differ, max |diff| 0.01"),
    (_ran(comparison={"identical": False, "rows_differing": 3, "max_abs_diff": 1e-7, "device": "cuda",
                      "within_tolerance": True}), "warning", "within 1e-05"),
    (_ran(rc=1, log_tail="Traceback\nValueError: boom"), "error", "exited 1: Traceback | ValueError: boom"),
    (_ran(origins={"task2": {"inside": False, "file": "/elsewhere/task2/__init__.py"}}), "error",
     "imported task2 from /elsewhere"),
    ({"skipped": "the static safety checks failed"}, "error", "not run: the static safety checks failed"),
])
def test_rerun_predict_judgement(pkg2, predict, severity, needle):
    found, _ = rule_findings(pkg2, "RERUN-PREDICT", rerun=_rerun(predict))
    if severity is None:
        assert found == []
    else:
        assert [(f.severity, needle in f.message) for f in found] == [(severity, True)]


@pytest.mark.parametrize("full,needle", [
    ({"steps": [], "valid_auc": 0.8712, "recorded_valid_auc": 0.8700, "spearman": 0.99}, None),
    ({"steps": [], "valid_auc": 0.8600, "recorded_valid_auc": 0.8700, "spearman": 0.99},
     "|diff| 0.01000 > tolerance 0.005"),
    ({"steps": [], "valid_auc": 0.8700, "recorded_valid_auc": 0.8700, "spearman": 0.80}, "0.8000 < 0.95"),
    ({"steps": [_ran(rc=2, name="task2", log_tail="error: bad config")], "valid_auc": None}, "exited 2"),
    ({"skipped": "the manifest records no reproduce steps"}, "not run: the manifest records no reproduce steps"),
])
def test_rerun_full_judgement(pkg2, full, needle):
    found, status = rule_findings(pkg2, "RERUN-FULL", rerun=_rerun(_ran(), full, mode="full"))
    if needle is None:
        assert found == [] and status == "ok"
    else:
        assert len(errors_of(found)) == 1 and needle in found[0].message


def test_banned_module_imported_at_run_time(pkg2):
    """The audit hook's import events (however the import was spelled) and the modules loaded at the end."""
    events = {"import": [{"what": "lightgbm", "stack": ["task2/predict.py:9"], "direct": "task2/predict.py:9"}]}
    found, _ = rule_findings(pkg2, "NO-ENSEMBLE-TREE", rerun=_rerun(_ran(events=events,
                                                                          banned_loaded=["sklearn.ensemble._forest"])))
    assert sorted(errors_of(found)) == [f"{CKPT}: re-run (predict): lightgbm was imported",
                                        f"{CKPT}: re-run (predict): sklearn.ensemble was imported"]


def test_rerun_rules_skip_without_rerun(pkg2):
    assert rule_findings(pkg2, "RERUN-PREDICT") == ([], "skipped")
    assert rule_findings(pkg2, "RERUN-FULL", rerun=_rerun(_ran())) == ([], "skipped")


# ---------------------------------------------------------------------------------------------
# the readers under the rules


def test_sniff_pickle_every_protocol_and_not_text():
    from referee.inspection.formats import sniff_pickle

    for proto in range(0, 6):
        data = pickle.dumps({"a": [1, 2.5, "x"], "b": _CreatesFile("/nonexistent/x")}, protocol=proto)
        assert sniff_pickle(data), proto
    for text in (b"ID,Task2\n0,0.5\n", b"import os\n", b'{"a": 1}', json.dumps([1, 2]).encode(), b"(", b"."):
        assert not sniff_pickle(text), text


def test_registry_is_complete_and_described():
    from referee.rules import registry

    rules = {r.id: r for r in registry()}
    assert set(rules) == {
        "PKG-MANIFEST", "PKG-HYGIENE", "PKG-LICENSE", "PRED-SCHEMA", "PRED-TRACK-COLUMN", "PRED-UPLOAD",
        "REPRO-SEEDING", "REPRO-RECORD", "T2-CHECKPOINT-FORMAT", "T2-SINGLE-MODEL", "T2-FEATURES",
        "T1-TRACK1-BASELINE", "T2-TRACK2-EMBEDDINGS", "T1-ITEM-INFO", "T1-OPEN-SOURCE", "NO-ENSEMBLE-TREE",
        "T3-DISJOINT", "T2-NO-PRETRAINED", "RERUN-PREDICT", "RERUN-FULL", "PKG-LAYOUT", "PKG-RELEASED-CODE",
        "CODE-DYNAMIC", "RERUN-SANDBOX"}
    assert all(r.description and set(r.tracks) <= {1, 2, 3} for r in rules.values())
    assert rules["T1-TRACK1-BASELINE"].tracks == (1,) and rules["T2-TRACK2-EMBEDDINGS"].tracks == (2,)
