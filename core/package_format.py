"""The submission package's format, declared once: what `harness package` writes and what the referee
(`harness verify`, `harness audit`) checks, so neither side keeps its own copy.

The layout (`LAYOUT` maps paths to roles; code folders and files are role "code"):

    prediction.csv, prediction.zip            the upload (prediction.csv alone at the zip's root)
    outputs/task1/item_info.parquet           Task 1 embeddings (official item_info schema)
    outputs/task1/reducer.safetensors         Task 1 reducer
    outputs/task1/task1.json                  Task 1 record: models and licences, config, seed, counts
    outputs/task2/model.safetensors           Task 2 checkpoint (flat name -> tensor)
    outputs/task2/model_args.json             {"model_class", "config"}: rebuilds the model
    outputs/task2/config.json, run.json, metrics.jsonl, training_curves.png
    outputs/prediction/predict.json           prediction record
    configs/task1.json, configs/task2.json    the configs the reproduce commands pass
    task1/ task2/ core/ harness/ scripts/ pyproject.toml requirements.lock reproduce.sh run_tests.sh
    REPRODUCE.md, LICENSE, MANIFEST.json

The reproduce steps (`reproduce_steps`) are data: a package's reproduce.sh (`reproduce_sh`), its
REPRODUCE.md and manifest, the referee's `--rerun full` and `./reproduce.sh`'s own embed, train and
predict stages all run the same commands. The verifier decides roles from paths (`layout_role`), never
from the manifest, which the submitter writes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

from core.challenge import TORCH_TO_SAFETENSORS
from core.seeding import CUBLAS_WORKSPACE

FORMAT = "mmctr-submission/1"
MANIFEST = "MANIFEST.json"

ROLES = {
    "prediction": "prediction.csv, the scored file",
    "upload": "prediction.zip, what is uploaded",
    "task1_embeddings": "Task 1 item_info.parquet",
    "task1_reducer": "Task 1 reducer weights",
    "task1_record": "task1.json",
    "task2_checkpoint": "Task 2 model weights",
    "task2_args": "model_args.json",
    "task2_record": "run.json",
    "prediction_record": "predict.json",
    "config": "a config the reproduce commands use",
    "metrics": "per-epoch metrics",
    "figure": "a figure",
    "code": "source code and scripts",
    "doc": "documentation",
    "license": "the LICENSE",
    "other": "anything else a run wrote (logs)",
}

LAYOUT = {
    "prediction.csv": "prediction",
    "prediction.zip": "upload",
    "outputs/task1/item_info.parquet": "task1_embeddings",
    "outputs/task1/reducer.safetensors": "task1_reducer",
    "outputs/task1/reducer.npz": "task1_reducer",
    "outputs/task1/task1.json": "task1_record",
    "outputs/task2/model.safetensors": "task2_checkpoint",
    "outputs/task2/model_args.json": "task2_args",
    "outputs/task2/config.json": "config",
    "outputs/task2/run.json": "task2_record",
    "outputs/task2/metrics.jsonl": "metrics",
    "outputs/task2/training_curves.png": "figure",
    "outputs/prediction/predict.json": "prediction_record",
    "configs/task1.json": "config",
    "configs/task2.json": "config",
    "REPRODUCE.md": "doc",
    "LICENSE": "license",
}
CODE_DIRS = ("task1", "task2", "core", "harness", "scripts")  # the code a package holds
CODE_FILES = ("pyproject.toml", "requirements.lock", "reproduce.sh", "run_tests.sh")
COPIED_CODE_FILES = tuple(f for f in CODE_FILES if f != "reproduce.sh")  # reproduce.sh is written, not copied
TASK2_ROLES = {rel.rsplit("/", 1)[1]: role for rel, role in LAYOUT.items()
               if rel.startswith("outputs/task2/") and role != "figure"}
TASK1_ROLES = {rel.rsplit("/", 1)[1]: role for rel, role in LAYOUT.items() if rel.startswith("outputs/task1/")}

# Files that hold model weights, in any framework: the packager labels an outputs/task2/ file with one of
# these suffixes a checkpoint, and the referee counts them as a model (one is allowed).
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".hdf5", ".keras", ".onnx", ".npz", ".npy",
                   ".msgpack", ".gguf", ".tflite", ".pb", ".ubj", ".cbm", ".joblib", ".pkl", ".pickle")

# What the packager leaves out when it copies a code folder (and the referee leaves out of a release's hashes)
SKIP_NAMES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints")

# Set before Python starts by a package's reproduce.sh (PYTHONHASHSEED only works that way)
REPRO_ENV = {"PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}


def skip_dir(name: str) -> bool:
    """A folder `harness package` does not descend into when it copies code."""
    return name in SKIP_NAMES or name.startswith(".") or name.endswith(".egg-info")


def skip_file(name: str) -> bool:
    """A file `harness package` does not copy (bytecode, hidden files)."""
    return name.endswith((".pyc", ".pyo")) or name.startswith(".")


def skipped(rel: str) -> bool:
    """Whether a path inside a code folder is one the copy leaves out (a skipped folder on the way, or a
    skipped file)."""
    parts = rel.split("/")
    return any(skip_dir(d) for d in parts[:-1]) or skip_file(parts[-1])


def layout_role(rel: str) -> str:
    """The role a path has in the layout `harness package` writes."""
    if rel in LAYOUT:
        return LAYOUT[rel]
    parts = rel.split("/")
    if len(parts) == 3 and parts[0] == "outputs":
        folder, name = parts[1], parts[2]
        suffix = os.path.splitext(name)[1]
        if folder == "task2":
            return TASK2_ROLES.get(name) or ("figure" if suffix == ".png" else "task2_checkpoint"
                                             if suffix in WEIGHT_SUFFIXES else "other")
        if folder == "task1":
            return TASK1_ROLES.get(name) or ("task1_reducer" if name.startswith("reducer") else "other")
        if folder == "prediction":
            return "prediction_record" if name == "predict.json" else "other"
    if rel in CODE_FILES or parts[0] in CODE_DIRS and len(parts) > 1:
        return "code"
    if rel.endswith(".md"):
        return "doc"
    return "other"


# ---------------------------------------------------------------------------------------------
# The reproduce steps


PREDICT_DEVICE = "cpu"  # prediction runs on the CPU in fp32 wherever training ran: any organizer re-computes
# prediction.csv byte for byte (the test split's 379,142 rows take about a minute on one core)


def reproduce_steps(track: int, task1: dict | None, device: str, configs: str = "configs",
                    predict_device: str = PREDICT_DEVICE) -> list[dict]:
    """The Task 1, Task 2 and predict commands, declared once, as data: module + args with {data}, {work},
    {device} placeholders. A package's reproduce.sh, REPRODUCE.md and manifest, the verifier's `--rerun
    full` and `./reproduce.sh`'s embed, train and predict stages (with `configs` its RUN_DIR/configs) all
    run these. Predict runs on `predict_device` (the CPU; releases up to 0.1.0 predicted on "{device}")."""
    steps = []
    if track in (1, 3):
        args = ["--data", "{data}", "--out", "{work}/task1", "--profile", str((task1 or {}).get("profile", "reference")),
                "--config", f"{configs}/task1.json", "--seed", str((task1 or {}).get("seed", 0)), "--device", "{device}"]
        steps.append({"name": "task1", "module": "task1", "args": args})
    train = ["train", "--data", "{data}"]
    if track in (1, 3):
        train += ["--item-info", "{work}/task1/item_info.parquet"]
    train += ["--out", "{work}/task2", "--config", f"{configs}/task2.json", "--device", "{device}"]
    steps.append({"name": "task2", "module": "task2", "args": train})
    steps.append({"name": "predict", "module": "task2", "args": [
        "predict", "--run", "{work}/task2", "--data", "{data}", "--out", "{work}/prediction", "--track", str(track),
        "--device", predict_device]})
    return steps


def fill_step(step: dict, data: str | Path, work: str | Path, device: str) -> list[str]:
    """One of `reproduce_steps` as the args it runs with: {data}, {work} and {device} filled in."""
    subst = {"{data}": str(data), "{work}": str(work), "{device}": device}
    args = []
    for a in step["args"]:
        for key, value in subst.items():
            a = a.replace(key, value)
        args.append(a)
    return args


def shell_line(step: dict, script: bool = True) -> str:
    """One step as a shell line: "$DATA"-style variables in reproduce.sh, DATA-style words in REPRODUCE.md."""
    words = []
    for a in step["args"]:
        if script:
            s = a.replace("{data}", '"$DATA"').replace("{work}", '"$WORK"').replace("{device}", '"$DEVICE"')
            words.append(s if s != a else shlex.quote(a))
        else:
            words.append(a.replace("{data}", "DATA").replace("{work}", "WORK").replace("{device}", "DEVICE"))
    return f"python -m {step['module']} " + " ".join(words)


def reproduce_sh(steps: list[dict], device: str) -> str:
    """The reproduce.sh a package carries, byte for byte (the referee compares the package's with it)."""
    env = " ".join(f"{k}={v}" for k, v in REPRO_ENV.items())
    body = "\n".join(shell_line(s) for s in steps)
    return f"""#!/usr/bin/env bash
# Re-creates this submission from the packaged code and configs (written by `harness package`).
# Usage: ./reproduce.sh DATA_DIR [WORK_DIR] [DEVICE]   (DEVICE: cpu or cuda; default {device})
# The hash seed and cuBLAS workspace are set before Python starts, as determinism needs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="$(cd "${{1:?usage: ./reproduce.sh DATA_DIR [WORK_DIR] [DEVICE]}}" && pwd)"
WORK="${{2:-$HERE/work}}"
DEVICE="${{3:-{device}}}"
export {env}
cd "$HERE"
if [ -f scripts/setup_env.sh ]; then source scripts/setup_env.sh; fi
mkdir -p "$WORK"
{body}
echo "done: compare $WORK/prediction/prediction.csv with prediction.csv" >&2
"""


# ---------------------------------------------------------------------------------------------
# The manifest's expected_state: the declared model's tensors, from the model's own code


def state_signature(model) -> dict:
    """{name: [safetensors dtype, shape]} of a module's state dict."""
    return {k: [TORCH_TO_SAFETENSORS.get(str(v.dtype).replace("torch.", ""), str(v.dtype)), list(v.shape)]
            for k, v in model.state_dict().items()}


def expected_state_from(build_model, args: dict) -> dict:
    """Build the declared class on the meta device (no memory, no data) and return its state signature."""
    import torch

    with torch.device("meta"):
        model = build_model(args)
    return state_signature(model)


def code_tree_hashes(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of a code folder's .py files (caches and links left out): two task2 folders
    with equal hashes build the same model."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts and not p.is_symlink()}
