"""Tiny random CLIP / XLM-R encoders built from configs, for offline smoke tests and benchmarks; no download.

`build_tiny_clip` and `build_tiny_e5` save a randomly initialised CLIP model and an E5-shaped XLM-RoBERTa
encoder (with `tiny_xlmr_tokenizer`, a small Unigram vocabulary over the synthetic titles' words) to a
folder laid out like a hub snapshot, so they load through the same `from_pretrained` calls as
openai/clip-vit-large-patch14 and intfloat/multilingual-e5-base; only the sizes and the weights differ.
Nothing here touches the network. Used by tests/task1 and bench/bench_task1.py.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

WORDS = (
    "passage query circle round ball square box block triangle pyramid wedge star sparkle starburst cross "
    "plus crossing ring hoop donut diamond gem crystal stripes lines bars cooking recipe kitchen travel journey "
    "trip music song concert football basketball tennis gaming videogame esports comedy prank joke smartphone "
    "gadget laptop fashion outfit makeup amazing daily quick my the best new first ultimate simple weekend "
    "story moments highlights guide episode part live today short vlog review challenge tips with friends home "
    "city night morning"
).split()


def build_tiny_clip(folder: Path, projection_dim: int = 64, image_size: int = 32, seed: int = 0) -> Path:
    """A CLIP model (2-layer ViT, 32x32 input, 8x8 patches) and its image processor, saved to `folder`."""
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=projection_dim,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return Path(folder)


def tiny_xlmr_tokenizer():
    """An XLM-R (Unigram, metaspace) tokenizer over the synthetic titles' words and single characters."""
    from transformers import XLMRobertaTokenizer

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("<mask>", 0.0)]
    chars = string.ascii_lowercase + string.digits + ":#-"
    vocab += [("\u2581" + w, -5.0) for w in WORDS]
    vocab += [("\u2581" + c, -9.0) for c in chars] + [(c, -10.0) for c in chars] + [("\u2581", -8.0)]
    return XLMRobertaTokenizer(vocab=vocab)


def build_tiny_e5(folder: Path, hidden: int = 64, seed: int = 0) -> Path:
    """An XLM-RoBERTa encoder (2 layers, `hidden` wide) and its tokenizer, saved to `folder`."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    tok = tiny_xlmr_tokenizer()
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=2 * hidden, max_position_embeddings=80, pad_token_id=tok.pad_token_id,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    XLMRobertaModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)
