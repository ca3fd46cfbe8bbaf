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
