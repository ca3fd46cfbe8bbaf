"""The core layer: what task1/, task2/, harness/ and referee/ share, importing none of them.

The challenge's constants (`core.challenge`, the baseline DIN's config and training among them), the
schemas of its files (`core.schemas`) and their validation (`core.validate`), the submission package's
format (`core.package_format`), one-line user errors and findings (`core.errors`), atomic writes and
hashing (`core.io`), seeding and the deterministic flags (`core.seeding`), the environment record
(`core.env`), the metrics (`core.metrics`), the cover-image policy (`core.covers`), typed configs
(`core.config`), licences (`core.spdx`) and the click runner every command uses (`core.cli`).

Layers, enforced by import-linter (pyproject.toml, tests/architecture/test_layers.py):

    harness/          the competitor's pipeline and the synthetic worlds     (imports everything)
    referee/          the organizer's side: verify, audit, score, the rules  (imports task2, core)
    task1/ | task2/   the two models, independent of each other              (import core only)
    core/             this package                                           (imports none of them)
"""
