"""`harness preflight` (and the first step of ./reproduce.sh): each problem one line with its fix, exit 1 for
data and models, 2 for usage and environment, nothing written. Run in-process on the tiny dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from core.challenge import DATASET_DIR
from core.io import sha256_file



@pytest.fixture
def preflight(harness_cli, tmp_path):
    """harness preflight --out tmp/run --device cpu ARGS; returns (code, stdout, error lines)."""

    def run(*args, device="cpu"):
        code, out, err = harness_cli("preflight", "--out", tmp_path / "run", "--device", device, *args)
        assert "Traceback" not in err
        return code, out, [ln for ln in err.splitlines() if ln.startswith("error: ")]

    return run


def _model_folder(root: Path, name: str, model_type="clip", weights=True, readme=None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "projection_dim": 64, "hidden_size": 64}))
    (folder / "preprocessor_config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights")
    if readme:
        (folder / "README.md").write_text(readme)
    return folder


def test_passes_on_tiny_and_writes_nothing(preflight, tiny_data, tmp_path):
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline")
    assert code == 0 and errors == [] and "preflight passed" in out
    assert "ok    [data]" in out and "400 covers listed" in out
    assert not (tmp_path / "run").exists()


def test_device_cuda_without_cuda_is_one_line(preflight, tiny_data, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline", device="cuda")
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("error: [device] --device cuda, but torch") and "pass --device cpu" in errors[0]


def test_schema_problems_are_read_from_the_footers(preflight, tiny_copy):
    path = tiny_copy / DATASET_DIR / "valid.parquet"
    pl.read_parquet(path).with_columns(pl.col("label").cast(pl.Int32)).write_parquet(path)
    (tiny_copy / "item_emb.parquet").write_bytes(b"PAR1 not parquet")  # read by validate, so checked too
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline")
    assert code == 1 and len(errors) == 2
    assert str(path) in errors[0] and "column label: dtype Int32, expected Int64" in errors[0]
    assert str(tiny_copy / "item_emb.parquet") in errors[1] and "not a readable parquet file" in errors[1]


def test_files_the_stages_read_must_be_there(preflight, tiny_copy):
    (tiny_copy / "item_feature.parquet").unlink()
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline")
    assert code == 1 and len(errors) == 1 and "item_feature.parquet: absent; the stages of track 3 read it" in errors[0]
    code, out, errors = preflight("--data", tiny_copy, "--track", "2")
    assert code == 0 and errors == []  # Track 2 reads no item_feature and no covers
    (tiny_copy / DATASET_DIR / "item_info.parquet").unlink()
    code, out, errors = preflight("--data", tiny_copy, "--track", "2")
    assert code == 1 and "item_info.parquet: absent" in errors[0]


def test_cover_policy(preflight, tiny_copy):
    images = tiny_copy / "item_images"
    (images / "10.jpg").unlink()
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline")
    assert code == 0 and "warn  [data]" in out and "10.jpg" in out and "mean image embedding" in out
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline", "--strict")
    assert code == 1 and "[data.image_missing]" in errors[0] and "--strict" in errors[0]
    for i in (11, 12, 13):
        (images / f"{i}.jpg").unlink()
    (images / "14.jpg").write_bytes(b"")
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline")
    assert code == 1 and len(errors) == 2 and "5 of 400 covers are missing or unreadable (1.2%)" in errors[0]


def test_model_folders_and_licences(preflight, tiny_data, tmp_path):
    clip = _model_folder(tmp_path, "clip")
    e5 = _model_folder(tmp_path, "e5", model_type="xlm-roberta")
    args = ["--data", tiny_data, "--image-model", clip, "--text-model", e5]
    code, out, errors = preflight(*args)
    assert code == 1 and len(errors) == 2
    assert errors[0].startswith(f"error: [models] image model {clip}: licence unknown (the folder has no README.md")
    assert "pass --image-model-license SPDX" in errors[0] and "pass --text-model-license SPDX" in errors[1]
    code, out, errors = preflight(*args, "--image-model-license", "mit", "--text-model-license", "Apache-2.0")
    assert code == 0, errors
    (e5 / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    code, out, errors = preflight(*args, "--image-model-license", "mit")
    assert code == 1 and "licence 'cc-by-nc-4.0'" in errors[0] and "not an open-source licence" in errors[0]


def test_encoders_narrower_than_item_emb_d128_are_refused_before_any_encoding(preflight, tiny_data, tmp_path):
    """Two local models of 48 and 32 dimensions: embed would fail after encoding every cover and title."""
    clip = _model_folder(tmp_path, "clip", readme="---\nlicense: mit\n---\n")
    e5 = _model_folder(tmp_path, "e5", model_type="xlm-roberta", readme="---\nlicense: mit\n---\n")
    for folder, key, width in ((clip, "projection_dim", 48), (e5, "hidden_size", 32)):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, **{key: width})))
    code, out, errors = preflight("--data", tiny_data, "--image-model", clip, "--text-model", e5)
    assert code == 2 and len(errors) == 1 and not (tmp_path / "run").exists()
    assert errors[0].startswith("error: [models] the fused embedding would have 80 dimensions (image 48 + text 32), "
                                "fewer than item_emb_d128's 128")


def test_models_that_cannot_load(preflight, tiny_data, tmp_path, monkeypatch):
    readme = "---\nlicense: mit\n---\n"
    no_weights = _model_folder(tmp_path, "clip", weights=False, readme=readme)
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline", "--image-model", no_weights)
    assert code == 1 and errors[0].startswith(f"error: [models] {no_weights}: image model folder: no weights")
    bert = _model_folder(tmp_path, "bert", model_type="bert", readme=readme)
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline", "--image-model", bert)
    assert code == 1 and "a 'bert' model; the image encoder takes CLIP models" in errors[0]
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # an empty cache
    code, out, errors = preflight("--data", tiny_data)  # the reference profile's hub ids, not cached
    assert code == 1 and len(errors) == 2 and "'openai/clip-vit-large-patch14' is not in the local" in errors[0]
    assert "hf download openai/clip-vit-large-patch14 --local-dir DIR" in errors[0]


def test_a_stated_licence_must_agree_with_the_known_one(preflight, tiny_data):
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline", "--image-model-license", "mit")
    assert code == 2 and "licence MIT stated, but the model is released under Apache-2.0" in errors[0]


def test_output_folder_and_disk(preflight, tiny_data, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out, errors = preflight("--data", tiny_data, "--track", "2", "--out", afile / "run")
    assert code == 2 and "is a file, not a folder" in errors[0]
    import harness.preflight as P

    real = shutil.disk_usage
    monkeypatch.setattr(P.shutil, "disk_usage", lambda p: real(p)._replace(free=30_000_000))
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline", "--json")
    doc = json.loads(out)
    need = doc["facts"]["disk"]["needed_now"]
    assert code == 2 and need > 30_000_000 and "0.03 GB free on this disk" in errors[0]
    # what an earlier run left in the folder counts against the estimate
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "cache.bin").write_bytes(b"\0" * need)
    code, out, errors = preflight("--data", tiny_data, "--profile", "offline")
    assert code == 0, errors


@pytest.mark.parametrize("card,total,free,ok", [
    ("Tesla T4", 14.58, 14.16, True),  # a 16 GB T4 once a CUDA context holds about 0.4 GiB
    ("GeForce GTX 1650", 3.82, 2.9, False),  # a 4 GB card with a display attached
])
def test_gpu_memory_against_each_stages_need(preflight, tiny_data, monkeypatch, card, total, free, ok):
    """The preflight probes free memory with a context (mocked) and compares it with the largest stage's
    estimate (harness.gpu_need): a T4 passes the t4 profile, a 4 GB card fails in one line naming the stage
    and what to lower."""
    import torch

    from harness import gpu_need

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_need, "probe", lambda timeout=120.0: {"free": int(free * gib), "total": int(total * gib),
                                                                  "name": card, "capability": "7.5"})
    code, out, errors = preflight("--data", tiny_data, "--track", "3", "--profile", "offline", "--hardware", "t4",
                                  "--json", device="cuda")
    gpu = json.loads(out)["facts"]["gpu"]
    assert gpu["compute_capability"] == "7.5" and gpu["task2_autocast"] == "float16"
    assert set(gpu["needs_gib"]) == {"embed (images)", "embed (texts)", "train"}
    worst = max(gpu["needs_gib"].values())
    if ok:
        assert code == 0 and worst < free, errors
    else:
        assert code == 2 and worst > free
        gpu_errors = [e for e in errors if e.startswith("error: [gpu]")]
        assert len(gpu_errors) == 1, errors
        assert gpu_errors[0].startswith(f"error: [gpu] {card}: 2.9 GiB free of 3.8 GiB with a CUDA context, but embed "
                                        "(images) needs about") and "lower image_batch_size" in gpu_errors[0]


def test_gpu_needs_follow_the_batch_and_dtype():
    from harness.gpu_need import din_need, encoder_need, train_need

    clip = [encoder_need("image", None, b, fp16=True).gib for b in (32, 128)]
    assert clip[0] < clip[1] < encoder_need("image", None, 128, fp16=False).gib
    assert 2.0 < clip[1] < 6.0  # CLIP ViT-L/14, 128 covers in fp16: weights 0.6 GB + activations
    assert train_need({}, 91_718, 512, amp=True).gib < train_need({}, 91_718, 4096, amp=True).gib
    assert din_need({}, 91_718, 8192, amp=True).gib < 14.0  # the official DIN batch fits a T4


def test_published_checksums_when_the_row_counts_are_official(preflight, tiny_copy, monkeypatch):
    """The tiny dataset stands in for the release: its row counts are declared official, the published
    sha256 of train.parquet is its own, the one of item_feature.parquet is not."""
    import harness.preflight as P

    rows = {rel: pl.scan_parquet(tiny_copy / rel).select(pl.len()).collect().item() for rel in P.OFFICIAL_ROWS}
    monkeypatch.setattr(P, "OFFICIAL_ROWS", rows)
    monkeypatch.setattr(P, "PUBLISHED_SHA256", {f"{DATASET_DIR}/train.parquet": sha256_file(tiny_copy / DATASET_DIR / "train.parquet"),
                                                "item_feature.parquet": "0" * 64})
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline", "--json")
    known = json.loads(out)["facts"]["known_data"]
    assert code == 0 and known["official_release_by_row_counts"] is True
    assert known["files"][f"{DATASET_DIR}/train.parquet"]["match"] is True
    assert known["files"]["item_feature.parquet"]["match"] is False
    warned = [c for c in json.loads(out)["checks"] if c["area"] == "known_data" and c["status"] == "warning"]
    assert len(warned) == 1 and warned[0]["path"] == str(tiny_copy / "item_feature.parquet")
    monkeypatch.setattr(P, "OFFICIAL_ROWS", dict(rows, **{f"{DATASET_DIR}/test.parquet": 379_142}))
    code, out, errors = preflight("--data", tiny_copy, "--profile", "offline", "--json")
    assert json.loads(out)["facts"]["known_data"] == {
        "official_release_by_row_counts": False, "files": {},
        "note": "the row counts are not the official release's: the published checksums do not apply"}
