"""reproduce.sh's user errors: one clear line and a non-zero exit, before any work starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "harness.pipeline", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_missing_data_folder(tmp_path):
    proc = _run("--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "no such data folder" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_track(tmp_path):
    proc = _run("--track", "4", "--out", tmp_path / "run")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "'--track'" in proc.stderr and "reproduce.sh --help" in proc.stderr


def test_bad_seed_in_the_script(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "reproduce.sh"), "--seed", "abc"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--seed must be a non-negative integer" in proc.stderr


def test_an_unavailable_model_is_refused_before_any_stage(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = _run("--data", tiny_data, "--out", run, "--device", "cpu", "--image-model", "no-such-org/no-such-model")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert any("[models] image model 'no-such-org/no-such-model' is not in the local Hugging Face cache" in ln
               and "--image-model DIR" in ln for ln in errors), proc.stderr
    assert "no stage was started" in proc.stderr.splitlines()[-1]
    assert not run.exists()  # nothing written


def test_a_model_that_fails_to_load_names_the_stage_and_the_model(tiny_data, tmp_path):
    """What the preflight cannot see without loading the model (corrupt weights) fails in its stage."""
    folder = tmp_path / "broken-clip"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "clip"}')
    (folder / "preprocessor_config.json").write_text('{"image_processor_type": "CLIPImageProcessor"}')
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n")
    run = tmp_path / "run"
    proc = _run("--data", tiny_data, "--out", run, "--device", "cpu", "--profile", "offline", "--image-model", folder)
    assert proc.returncode == 2 and proc.stdout == ""
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: stage embed failed (exit 2)") and str(folder) in line
    assert str(run / "logs" / "embed.log") in line
    assert (run / "stamps" / "validate.json").is_file()  # the finished stage is kept
    assert json.loads((run / "preflight.json").read_text())["ok"] is True


def test_a_changed_config_reruns_the_stage(tmp_path):
    import dataclasses

    from harness.options import RunOptions
    from harness.pipeline import build_stages
    from harness.worlds import DEFAULT_WORLD

    opts = RunOptions(run_dir=tmp_path, data=None, scale="tiny", seed=0, device="cpu", track=3, hardware="cpu",
                      profile="offline", image_model=None, text_model=None, reducer=None, epochs=None,
                      world=DEFAULT_WORLD, image_model_license=None, text_model_license=None, strict=False, force=False)
    cfg = tmp_path / "configs" / "task1.json"
    embed = {s.name: s for s in build_stages(opts)[0]}["embed"]
    assert embed.cmd[embed.cmd.index("--config") + 1] == str(cfg) and cfg in embed.inputs
    assert "reducer" not in cfg.read_text()
    embed2 = {s.name: s for s in build_stages(dataclasses.replace(opts, reducer="contrastive"))[0]}["embed"]
    assert cfg in embed2.inputs and '"reducer": "contrastive"' in cfg.read_text()


def test_the_pipeline_runs_the_packages_reproduce_steps(tmp_path):
    """embed, train and predict are harness.package.reproduce_steps (what a package's reproduce.sh and the
    verifier's --rerun full run) on RUN_DIR, plus only what a pipeline run adds: one declaration of each flag."""
    from core.package_format import reproduce_steps
    from harness.options import RunOptions
    from harness.pipeline import build_stages
    from harness.worlds import DEFAULT_WORLD

    for track in (1, 2, 3):
        opts = RunOptions(run_dir=tmp_path, data=None, scale="tiny", seed=3, device="cpu", track=track, hardware="cpu",
                          profile="offline", image_model=None, text_model=None, reducer=None, epochs=2,
                          world=DEFAULT_WORLD, image_model_license=None, text_model_license=None, strict=True,
                          force=False)
        stages = {s.name: s for s in build_stages(opts)[0]}
        data = str(tmp_path / "data")
        for step in reproduce_steps(track, {"profile": "offline", "seed": 3}, "cpu",
                                    configs=str(tmp_path / "configs")):
            want = [sys.executable, "-m", step["module"], *[a.replace("{data}", data).replace("{work}", str(tmp_path))
                                                           .replace("{device}", "cpu") for a in step["args"]]]
            stage = stages[{"task1": "embed", "task2": "train", "predict": "predict"}[step["name"]]]
            extra = {"task1": ["--strict"], "task2": ["--overwrite", "--epochs", "2"], "predict": []}[step["name"]]
            assert stage.cmd == want + extra, (track, step["name"])
        assert ("embed" in stages) == (track != 2)
        task2_cfg = json.loads((tmp_path / "configs" / "task2.json").read_text())
        assert task2_cfg["seed"] == 3 and (task2_cfg.get("model_class") == "DIN") == (track == 1)
