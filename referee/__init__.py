"""The referee: what an organizer runs on a stranger's submission, kept apart from the competitor's pipeline.

    referee/verify.py       `harness verify`: static findings -> re-run evidence -> re-run rules
    referee/audit.py        `harness audit`: the final round, top of the leaderboard down
    referee/score.py        `harness score`: the competition's AUCs for a prediction.csv
    referee/rerun.py        runs a package's own code on a copy, inside the sandbox, and collects evidence
    referee/released.py     earlier releases' file hashes (releases/*.json) and the maintainers' command
    referee/rules/          the rules, one registry (rules/registry.py), each check a function of the package
    referee/sandbox/        the containment: the plan (limits, mounts, namespaces), the init and driver scripts
    referee/inspection/     reading a package without running it: the folder, Python sources, file formats

It imports task2 (the trusted model code the declared class is rebuilt from) and core, never the
competitor's pipeline (harness/); the import-linter contracts in pyproject.toml hold it so. Packages do
not carry this folder: the organizer's installed referee is the one that judges.
"""
