"""The core layer: what task1/, task2/ and harness/ share, importing none of them.

The challenge's constants (`core.challenge`), the schemas of its files (`core.schemas`), one-line user
errors and findings (`core.errors`), atomic writes and hashing (`core.io`), seeding and the
deterministic flags (`core.seeding`), the environment record (`core.env`), the metrics (`core.metrics`),
the cover-image policy (`core.covers`) and the click runner every command uses (`core.cli`).

Layers, enforced by import-linter (pyproject.toml, tests/test_architecture.py):

    harness/          orchestration: cli, pipeline, package, verify, the rules      (imports task1, task2, core)
    task1/ | task2/   the two models, independent of each other                    (import core only)
    core/             this package                                                  (imports none of them)
"""
