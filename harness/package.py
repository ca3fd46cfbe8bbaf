"""`harness package RUN_DIR --out SUBMISSION_DIR [--track 1|2|3]`: the final-round folder, verified.

RUN_DIR holds what the pipeline wrote:

    RUN_DIR/task1/        `harness embed --out` (tracks 1 and 3): item_info.parquet, task1.json, reducer
    RUN_DIR/task2/        `harness train --out`: model.safetensors, model_args.json, config.json, run.json, ...
    RUN_DIR/prediction/   `harness predict --out`: prediction.csv, prediction.zip, predict.json

The package (layout in core/package_format.py) gets the upload, the Task 1 outputs (not the feature
cache), the Task 2 checkpoint and records, the code (task1/, task2/, core/, harness/, scripts/, pyproject.toml,
requirements.lock, run_tests.sh, from the project root, without caches), the configs the reproduce
commands pass, a generated reproduce.sh and REPRODUCE.md with the exact commands, a LICENSE, and
MANIFEST.json (every file's sha256, size and role; input data hashes; environment fingerprint; seeds
and flags; git state; recorded metrics; the declared model's expected state; the reproduce steps).

Everything is built in a temporary folder beside --out and verified (`harness verify`, static) there;
a package with findings is refused (exit 1) and removed, so --out is either complete or untouched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from core.cli import track_option
from core.errors import UserError
from core.io import sha256_file
from core.challenge import TORCH_TO_SAFETENSORS
from core.package_format import (CODE_DIRS, COPIED_CODE_FILES, FORMAT, REPRO_ENV, code_tree_hashes, expected_state_from,
                                 layout_role, reproduce_sh, reproduce_steps, shell_line, skip_dir, skip_file)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

EXPECTED_STATE_SNIPPET = r"""
import json, sys
root, args_path, codes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])  # codes: core.challenge.TORCH_TO_SAFETENSORS
sys.path[:] = [root] + [p for p in sys.path[1:] if p and "__editable__" not in p]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in (getattr(f, "__module__", "") or "")
                    and "__editable__" not in type(f).__module__]
import torch
try:
    from task2.registry import build_model
except ImportError:  # task2 code of the earlier release kept it in task2/model.py
    from task2.model import build_model
with open(args_path) as f:
    args = json.load(f)
with torch.device("meta"):
    model = build_model(args)
print(json.dumps({k: [codes.get(str(v.dtype).replace("torch.", ""), str(v.dtype)), list(v.shape)]
                  for k, v in model.state_dict().items()}))
"""


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise UserError(f"{what} not found; RUN_DIR must hold task2/ (harness train --out), prediction/ "
                        "(harness predict --out) and, for tracks 1 and 3, task1/ (harness embed --out)", path=path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"not readable JSON ({type(e).__name__}); re-run the step that wrote it", path=path) from None
    if not isinstance(doc, dict):
        raise UserError("not a JSON object; re-run the step that wrote it", path=path)
    return doc


class _Builder:
    """Copies files into the temporary package folder and remembers each one's role."""

    def __init__(self, root: Path):
        self.root = root
        self.roles: dict[str, str] = {}

    def copy(self, src: Path, rel: str, role: str) -> None:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)  # kept as a link: verify refuses it, naming the file
        else:
            shutil.copyfile(src, dst)
        self.roles[rel] = role

    def write(self, rel: str, data: bytes | str, role: str) -> None:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        self.roles[rel] = role

    def copy_tree(self, src: Path, rel: str) -> int:
        n = 0
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if not skip_dir(d))
            for name in sorted(filenames):
                if skip_file(name):
                    continue
                path = Path(dirpath) / name
                self.copy(path, f"{rel}/{path.relative_to(src).as_posix()}", "code")
                n += 1
        return n


def _run_dir_files(folder: Path):
    """Top-level entries of a run folder (sub-folders such as Task 1's cache/ are not packaged)."""
    return sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink())


def _expected_state(package_root: Path, args: dict, args_path: Path, log) -> dict:
    """The declared class's state signature, built from the packaged task2 code (on the meta device)."""

    if code_tree_hashes(package_root / "task2") == code_tree_hashes(PROJECT_ROOT / "task2"):
        from task2.registry import build_model

        try:
            return expected_state_from(build_model, args)
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"model_args.json does not rebuild the model: {e}", path=args_path) from None
    log("packaged task2 differs from this harness's: rebuilding the declared class in a subprocess")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-B", "-c", EXPECTED_STATE_SNIPPET, str(package_root), str(args_path),
                           json.dumps(TORCH_TO_SAFETENSORS)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=package_root)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the packaged task2 cannot rebuild the declared model: {last[:300]}", path=args_path)
    return json.loads(proc.stdout)


def reproduce_md(track: int, steps: list[dict], manifest: dict, device: str) -> str:
    env = manifest["environment"]
    torch_env = env.get("torch") or {}
    git = manifest["git"]
    m = manifest["metrics"]
    cmds = "\n".join("    " + shell_line(s, script=False) for s in steps)
    t1 = ""
    if track in (1, 3):
        models = ", ".join(f"{x.get('id')} ({x.get('license')})" for x in manifest.get("task1", {}).get("models", []))
        t1 = f"\nTask 1 encoders: {models or 'none recorded'}.\n"
    auc = m.get("task2_best_valid_auc")
    auc_text = f"{auc:.5f}" if isinstance(auc, (int, float)) else "not recorded"
    return f"""# Reproducing this submission (track {track}, column {manifest['prediction_column']})

Packaged by `harness package` from commit {git.get('commit') or 'unknown'}
(working tree {'dirty: the packaged code is the source of truth' if git.get('dirty') else 'clean'}).

## Environment the results came from

Python {env.get('python')}, torch {torch_env.get('version')} (CUDA {torch_env.get('cuda')}, cuDNN
{torch_env.get('cudnn')}), GPU {torch_env.get('gpu') or 'none'}, {env.get('platform')}. Package versions and
the full fingerprint are in MANIFEST.json (`environment`); install them with `scripts/setup_env.sh`
(requirements.lock).

## Commands

From this folder, with DATA the MicroLens_1M_MMCTR folder (it holds MicroLens_1M_x1/):

    ./reproduce.sh DATA [WORK] [DEVICE]      # DEVICE: cpu or cuda (default {device})

which exports {', '.join(f'{k}={v}' for k, v in REPRO_ENV.items())} before Python starts, then runs:

{cmds}
{t1}
Seeds: Task 2 {manifest['seeds'].get('task2')}{', Task 1 ' + str(manifest['seeds'].get('task1')) if track in (1, 3) else ''};
the deterministic flags each run used are in MANIFEST.json (`seeds`).

## Recorded results

Best validation AUC {auc_text} at epoch {m.get('task2_best_epoch')} of {m.get('task2_epochs_run')}.

## Checking the package

    harness verify . --data DATA                    # manifest, schemas, every static rule; runs no code
    harness verify . --data DATA --rerun predict    # re-computes prediction.csv; byte-identical on the CPU
    harness verify . --data DATA --rerun full       # re-trains; AUC within 0.005, Spearman >= 0.95

`harness verify --list-rules` lists the rules. prediction.zip is the file to upload.
"""


def _license(code_root: Path, choice: str | None, holder: str) -> str:
    from referee.inspection.licenses import detect_license, license_text

    if choice is None:
        existing = code_root / "LICENSE"
        if existing.is_file() and not existing.is_symlink():
            text = existing.read_text(encoding="utf-8", errors="replace")
            if detect_license(text):
                return text
        choice = "Apache-2.0"
    return license_text(choice, holder=holder)


def build_package(run_dir, out, track: int | None = None, data=None, license: str | None = None,
                  holder: str = "the authors of this submission", code_root=None, overwrite: bool = False,
                  log=None):
    """Build, verify and publish the package; return the verify report (published only when it passes)."""
    from core.env import fingerprint
    from referee.verify import verify_package

    log = log or (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out)
    code_root = Path(code_root) if code_root is not None else PROJECT_ROOT
    if not run_dir.is_dir():
        raise UserError("RUN_DIR not found; pass the folder holding task2/, prediction/ (and task1/)", path=run_dir)
    if out.exists() and not overwrite:
        raise UserError("already exists; choose a new --out or pass --overwrite", path=out)
    # RUN_DIR/submission (what reproduce.sh writes) is fine; only the folders that are packaged are off limits.
    target = out.resolve()
    packaged = [(run_dir / name).resolve() for name in ("task1", "task2", "prediction")]
    if target == run_dir.resolve() or any(d == target or d in target.parents for d in packaged):
        raise UserError("--out must not be RUN_DIR or one of its task1/, task2/, prediction/ folders; "
                        "use e.g. RUN_DIR/submission", path=out)
    t2, pred_dir, t1 = run_dir / "task2", run_dir / "prediction", run_dir / "task1"
    args_doc = _read_json(t2 / "model_args.json", "model_args.json")
    run_doc = _read_json(t2 / "run.json", "run.json")
    config_doc = _read_json(t2 / "config.json", "config.json")
    predict_doc = _read_json(pred_dir / "predict.json", "predict.json")
    for p in (t2 / "model.safetensors", pred_dir / "prediction.csv", pred_dir / "prediction.zip"):
        if not p.is_file():
            raise UserError("not found; re-run the step that writes it (harness train / harness predict)", path=p)
    if track is None:
        track = predict_doc.get("track")
        if track not in (1, 2, 3):
            raise UserError("predict.json names no track; pass --track 1|2|3", path=pred_dir / "predict.json")
    task1_doc = None
    if track in (1, 3):
        task1_doc = _read_json(t1 / "task1.json", "task1.json")
        if not (t1 / "item_info.parquet").is_file():
            raise UserError(f"track {track} packages Task 1's item_info.parquet; run `harness embed --out "
                            f"{t1}` first", path=t1 / "item_info.parquet")
    if not isinstance(config_doc.get("train"), dict):
        raise UserError('config.json has no "train" object (the run config); re-run harness train',
                        path=t2 / "config.json")
    if data is None and config_doc.get("data_dir") and Path(config_doc["data_dir"]).is_dir():
        data = Path(config_doc["data_dir"])
        log(f"data: {data} (from {t2 / 'config.json'})")
    if data is not None and not Path(data).is_dir():
        raise UserError("data folder not found; pass the MicroLens_1M_MMCTR root", path=data)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    try:
        b = _Builder(tmp)
        # outputs, each with the role its place in the layout gives it (the verifier derives the same)
        folders = [("task2", t2)] + ([("task1", t1)] if track in (1, 3) else []) + [("prediction", pred_dir)]
        for name, folder in folders:
            for p in _run_dir_files(folder):
                rel = p.name if name == "prediction" and p.name in ("prediction.csv", "prediction.zip") \
                    else f"outputs/{name}/{p.name}"
                b.copy(p, rel, layout_role(rel))
        # code
        for d in CODE_DIRS:
            if (code_root / d).is_dir():
                log(f"code: {d}/ ({b.copy_tree(code_root / d, d)} files)")
            elif d in ("task2", "core", "harness") or (d == "task1" and track in (1, 3)):
                raise UserError(f"{d}/ not found in the code root; the package must hold the code", path=code_root)
        for name in COPIED_CODE_FILES:
            if (code_root / name).is_file():
                b.copy(code_root / name, name, "code")
            else:
                log(f"warning: {name} not found in {code_root}; not packaged")
        # configs, commands, docs
        b.write("configs/task2.json", json.dumps(config_doc["train"], indent=2, sort_keys=True) + "\n", "config")
        if task1_doc is not None:
            b.write("configs/task1.json", json.dumps(task1_doc.get("config", {}), indent=2, sort_keys=True) + "\n",
                    "config")
        device = "cuda" if str(run_doc.get("device", "cpu")).startswith("cuda") else "cpu"
        steps = reproduce_steps(track, task1_doc, device)
        b.write("reproduce.sh", reproduce_sh(steps, device), "code")
        os.chmod(tmp / "reproduce.sh", 0o755)
        b.write("LICENSE", _license(code_root, license, holder), "license")
        expected = _expected_state(tmp, args_doc, tmp / "outputs/task2/model_args.json", log)
        manifest = _manifest(track, run_doc, predict_doc, task1_doc, args_doc, expected, steps, code_root)
        b.write("REPRODUCE.md", reproduce_md(track, steps, manifest, device), "doc")
        manifest["files"] = {rel: {"sha256": sha256_file(tmp / rel) if not (tmp / rel).is_symlink() else "",
                                   "size": (tmp / rel).lstat().st_size, "role": role}
                             for rel, role in sorted(b.roles.items())}
        manifest["packaging_environment"] = fingerprint()
        (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n",
                                           encoding="utf-8")
        log(f"verifying {len(b.roles)} files before publishing")
        report = verify_package(tmp, data=data, track=track, log=log, expected_state=expected)
        report.root = str(out)
        if not report.ok:
            shutil.rmtree(tmp, ignore_errors=True)
            return report
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _manifest(track, run_doc, predict_doc, task1_doc, args_doc, expected, steps, code_root) -> dict:
    from core.env import git_state
    from core.challenge import TRACK_COLUMNS

    inputs = run_doc.get("inputs") if isinstance(run_doc.get("inputs"), dict) else {}
    data = {}
    for name in ("train", "valid") + (("item_info",) if track == 2 else ()):
        if isinstance(inputs.get(name), dict):
            data[name] = {"sha256": inputs[name].get("sha256"), "path": inputs[name].get("path")}
    test_sha = (predict_doc.get("inputs") or {}).get("test.parquet")
    if test_sha:
        data["test"] = {"sha256": test_sha}
    seeds = {"task2": run_doc.get("seed"), "task2_seeding": run_doc.get("seeding"),
             "reproduce_env": dict(REPRO_ENV)}
    task1 = {}
    if task1_doc is not None:
        seeds.update({"task1": task1_doc.get("seed"), "task1_seeding": task1_doc.get("seeding")})
        task1 = {"profile": task1_doc.get("profile"), "models": task1_doc.get("models", []),
                 "inputs": task1_doc.get("inputs"), "quality": task1_doc.get("quality"),
                 "environment": task1_doc.get("environment")}
    try:
        from importlib.metadata import version

        harness_version = version("mmctr-harness")
    except Exception:  # not installed as a distribution
        harness_version = None
    return {
        "format": FORMAT,
        "harness_version": harness_version,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "track": track,
        "git": git_state(code_root),
        "prediction_column": TRACK_COLUMNS[track],
        "data": data,
        "environment": run_doc.get("env") or {},
        "seeds": seeds,
        "metrics": {"task2_best_valid_auc": run_doc.get("best_valid_auc"), "task2_best_epoch": run_doc.get("best_epoch"),
                    "task2_epochs_run": run_doc.get("epochs_run"),
                    "task1_quality": (task1_doc or {}).get("quality")},
        "task2": {"model_class": args_doc.get("model_class"), "checkpoint": "outputs/task2/model.safetensors",
                  "args": "outputs/task2/model_args.json", "expected_state": expected},
        "task1": task1,
        "reproduce": {"steps": steps, "env": dict(REPRO_ENV), "cwd": "the package root"},
    }


@click.command("package")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Submission folder to write (must not exist unless --overwrite).")
@track_option(default=None, help="1 = Task1, 2 = Task2, 3 = Task1&2 [default: predict.json's].")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Dataset root, for the checks that need it [default: the data_dir in task2/config.json].")
@click.option("--license", "license_", type=click.Choice(["Apache-2.0", "MIT"]), default=None,
              help="LICENSE to ship [default: the project's LICENSE if MIT/Apache-2.0, else Apache-2.0].")
@click.option("--copyright-holder", default="the authors of this submission", show_default=True,
              help="Named in the MIT licence.")
@click.option("--code-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Project root whose code is packaged [default: this harness's project].")
@click.option("--overwrite", is_flag=True, help="Replace --out (only once the new package has passed verify).")
@click.option("--json", "as_json", is_flag=True, help="Print only {ok, exit_code, out, findings} as JSON.")
def package_cmd(run_dir, out_dir, track, data_dir, license_, copyright_holder, code_root, overwrite, as_json) -> int:
    """Build the final-round submission folder from RUN_DIR; refuse it (exit 1) if `harness verify` fails."""
    from referee.verify import render

    report = build_package(run_dir, out_dir, track=track, data=data_dir,
                           license=license_, holder=copyright_holder, code_root=code_root, overwrite=overwrite,
                           log=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(dict(report.to_dict(), out=str(out_dir) if report.ok else None), indent=2,
                              sort_keys=True))
    elif report.ok:
        n_warn = len(report.findings)
        click.echo(f"packaged track {report.track} into {out_dir} ({n_warn} warning(s)); upload "
                   f"{out_dir / 'prediction.zip'}")
        for f in report.findings:
            click.echo(f"warning [{f.id}] {f.path}: {f.message}", err=True)
    else:
        click.echo(render(report), err=True)
        click.echo(f"refused: the package would fail `harness verify`; nothing was written to {out_dir}")
    return report.exit_code
