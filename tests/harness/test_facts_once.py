"""Each fact has one definition: the baseline DIN's config and training (core.challenge) are what task2 trains
DIN with and what the referee compares a Track 1 run against; the sandboxed driver, which imports nothing of
the project, holds no copy of the rules' lists and gets them in its settings."""

from __future__ import annotations

import dataclasses

from core.challenge import DIN_BASELINE_MODEL, DIN_BASELINE_TRAIN, TORCH_TO_SAFETENSORS, TRACK1_TUNABLE_TRAIN


def test_task2_trains_din_with_the_challenges_baseline():
    from task2.din import DINConfig
    from task2.train import load_train_config

    defaults = dataclasses.asdict(DINConfig())
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items() if k in DIN_BASELINE_MODEL} \
        == DIN_BASELINE_MODEL
    cfg = dataclasses.asdict(load_train_config(None, model_class="DIN", batch_size=8192, learning_rate=1e-3))
    assert {k: cfg[k] for k in DIN_BASELINE_TRAIN} == DIN_BASELINE_TRAIN


def test_the_referee_compares_with_the_same_baseline():
    from referee import facts

    assert facts.BASELINE_DIN_TRAIN == {k: v for k, v in DIN_BASELINE_TRAIN.items() if k not in TRACK1_TUNABLE_TRAIN}
    assert set(facts.BASELINE_KEYS_ADDED) <= set(facts.BASELINE_DIN_TRAIN)


def test_the_sandboxed_driver_holds_no_copy_and_reads_its_settings(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from referee import facts
    from referee.sandbox import rerun_driver

    assert rerun_driver.BANNED == () and rerun_driver.TORCH_TO_ST == {}
    source = (tmp_path / "x").parent / "settings.json"
    settings = {"package_root": str(tmp_path), "read": [], "write": [str(tmp_path)], "devices": [],
                "banned": list(facts.BANNED), "dtype_codes": TORCH_TO_SAFETENSORS}
    source.write_text(json.dumps(settings))
    (tmp_path / "probe_mod.py").write_text("import sklearn.tree  # a banned module\n")
    r, w = os.pipe()
    token_r, token_w = os.pipe()
    os.write(token_w, b"t0ken")
    os.close(token_w)
    proc = subprocess.run([sys.executable, "-B", "-s", rerun_driver.__file__, str(w), str(token_r), str(source), "plain",
                           str(tmp_path), "--", "probe_mod"], capture_output=True, text=True, timeout=120,
                          pass_fds=(w, token_r))
    os.close(w)
    os.close(token_r)
    with os.fdopen(r, "rb") as f:
        events = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = [e for e in events if e.get("type") == "record"][-1]
    assert all(e.get("token") == "t0ken" for e in events)  # every line the driver writes carries the run's token
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert "sklearn.tree" in record["banned_loaded"]  # the list came from the settings: the driver has none
