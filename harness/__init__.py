"""The MMCTR submission harness: schemas, rules, packaging and verification.

`task1/` (item embeddings) and `task2/` (CTR model) never import each other; `harness/` joins them.
"""

__version__ = "0.1.0"
