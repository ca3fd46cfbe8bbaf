"""The end-to-end run behind `./reproduce.sh`: preflight, data, Task 1, Task 2, prediction, package, verify, report.

The preflight (harness/preflight.py; also `harness preflight` with the same options) runs first and
checks in seconds what could otherwise fail late: the device, the data's layout and cheap schema checks,
the Task 1 models and their licences, the output folder and free disk, GPU memory. A failure stops the
run before any stage, with one line per problem; nothing is written.

Each stage runs as its own process (`python -m harness ...`), logs to RUN_DIR/logs/<stage>.log, and
records a stamp (the command and a digest of every input it reads) in RUN_DIR/stamps/<stage>.json. A
stage whose outputs exist and whose stamp matches is skipped, so a re-run after an interruption continues
where it stopped; `--force` redoes everything. Digests are cheap (harness/stamps.py): a file's sha256 is
remembered by size, mtime, ctime and inode in RUN_DIR/stamps/hashes.json, and a folder of many files (the
covers) is fingerprinted by its listing (names, sizes, mtimes), so a re-run of a finished run reads no
data. A failing stage names itself and its log, and the run exits with that stage's code. Outputs of a
stage are written by the stage itself atomically, so an interrupted stage never leaves a half-written
file that a later run would trust.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from core.challenge import DATASET_DIR, TRACK_COLUMNS
from core.cli import track_option
from core.errors import UserError
from core.io import write_json_atomic
from core.package_format import fill_step, reproduce_steps
from harness.options import RunOptions
from harness.stamps import HashCache, digest
from harness.worlds import DEFAULT_WORLD, WORLDS

ROOT = Path(__file__).resolve().parent.parent
# --hardware t4: a 16 GB T4 with CLIP ViT-L/14 in fp16 and the default Task 2 model. What each stage needs
# of a CUDA device is estimated from these batches and dtypes (harness.gpu_need) and compared with what the
# card has free (the preflight), not asked as a fixed figure
HARDWARE = {
    "cpu": {"task1": {}, "task2": {}},
    "t4": {"task1": {"image_batch_size": 128, "text_batch_size": 256, "fp16": True, "image_workers": 4},
           "task2": {"amp": True}},
}


@dataclass
class Stage:
    name: str
    cmd: list[str]
    inputs: list[Path]
    outputs: list[Path]
    env: dict = field(default_factory=dict)


@dataclass
class Runner:
    run_dir: Path
    force: bool = False
    timings: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)
    hashes: HashCache = field(default_factory=HashCache)

    def stamp_of(self, stage: Stage) -> dict:
        return {"cmd": stage.cmd, "inputs": {str(p): digest(p, self.hashes) for p in stage.inputs}}

    def run(self, stage: Stage) -> None:
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp_path = self.run_dir / "stamps" / f"{stage.name}.json"
        want = self.stamp_of(stage)
        self.hashes.save()
        if (not self.force and stamp_path.is_file() and all(p.exists() for p in stage.outputs)
                and json.loads(stamp_path.read_text()) == want):
            self.status[stage.name] = "skipped (up to date)"
            self.timings[stage.name] = 0.0
            click.echo(f"[{stage.name}] up to date, skipped", err=True)
            return
        stamp_path.unlink(missing_ok=True)
        log = logs / f"{stage.name}.log"
        click.echo(f"[{stage.name}] running ... (log: {log})", err=True)
        t0 = time.perf_counter()
        with log.open("w") as f:
            f.write("$ " + " ".join(stage.cmd) + "\n")
            f.flush()
            proc = subprocess.run(stage.cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                  env=dict(os.environ, **stage.env))
        seconds = time.perf_counter() - t0
        self.timings[stage.name] = round(seconds, 1)
        if proc.returncode != 0:
            last = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            reason = last[-1].strip() if last else "no output"
            raise UserError(f"stage {stage.name} failed (exit {proc.returncode}): {reason} -- full log: {log}",
                            exit_code=proc.returncode if proc.returncode > 0 else 1)
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            raise UserError(f"stage {stage.name} exited 0 but did not write {', '.join(missing)} -- log: {log}",
                            exit_code=1)
        write_json_atomic(stamp_path, want)  # the inputs as they were when the stage started
        self.hashes.save()
        self.status[stage.name] = "done"
        click.echo(f"[{stage.name}] done in {seconds:.1f}s", err=True)


def harness_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "harness", *map(str, args)]


def task1_overrides(o: RunOptions) -> dict:
    """The settings over the Task 1 profile that the options give (RUN_DIR/configs/task1.json)."""
    cfg = dict(HARDWARE[o.hardware]["task1"])
    for key in ("image_model", "text_model", "reducer", "image_model_license", "text_model_license"):
        if getattr(o, key):
            cfg[key] = getattr(o, key)
    return cfg


def build_stages(o: RunOptions) -> tuple[list[Stage], dict]:
    """The stages for these options, and the paths the report reads. Each stage's inputs are the files it
    reads (its stamp's digests)."""
    run = o.run_dir
    data = o.data or run / "data"
    seed = str(o.seed)
    track = o.track
    paths = {"data": data, "task1": run / "task1", "task2": run / "task2", "prediction": run / "prediction",
             "submission": run / "submission"}
    stages = []
    strict = ["--strict"] if o.strict else []
    every_file = [data / DATASET_DIR, data / "item_feature.parquet", data / "item_images", data / "item_emb.parquet",
                  data / "item_seq.parquet"]
    if o.data is None:
        stages.append(Stage("synth", harness_cmd("synth", data, "--scale", o.scale, "--world", o.world,
                                                 "--seed", seed, "--overwrite"), [], [data / "oracle" / "oracle.json"]))
    # --require-all --track: an absent file is an error only when a stage of this track reads it
    stages.append(Stage("validate", harness_cmd("validate", data, "--require-all", "--track", track, *strict),
                        every_file, []))

    # embed, train and predict: the commands a package's reproduce.sh runs (harness.package.reproduce_steps),
    # on RUN_DIR's folders and configs, with what only a pipeline run adds (--strict, --overwrite, --epochs)
    configs = run / "configs"
    steps = {s["name"]: s for s in reproduce_steps(track, {"profile": o.profile, "seed": o.seed},
                                                   o.device, configs=str(configs))}
    def step_cmd(name: str) -> list[str]:
        return [sys.executable, "-m", steps[name]["module"], *fill_step(steps[name], data, run, o.device)]

    if track == 2:  # Task 2 only: the provided embeddings, byte for byte
        item_info = data / DATASET_DIR / "item_info.parquet"
    else:
        reads = [data / "item_feature.parquet", data / "item_images", data / DATASET_DIR / "train.parquet",
                 data / DATASET_DIR / "item_info.parquet"]  # titles and tags, covers, histories, the official item_tags
        write_json_atomic(configs / "task1.json", task1_overrides(o))
        stages.append(Stage("embed", step_cmd("task1") + strict, [*reads, configs / "task1.json"],
                            [paths["task1"] / "item_info.parquet"]))
        item_info = paths["task1"] / "item_info.parquet"
    paths["item_info"] = item_info

    # the run's seed and, for Track 1, the baseline DIN, in the config file as a package carries them
    task2_cfg = {**HARDWARE[o.hardware]["task2"], "seed": int(seed), **({"model_class": "DIN"} if track == 1 else {})}
    write_json_atomic(configs / "task2.json", task2_cfg)
    cmd = step_cmd("task2") + ["--overwrite"] + (["--epochs", str(o.epochs)] if o.epochs else [])
    if o.nproc > 1:  # the same command under torchrun: one process per GPU (or gloo workers on the CPU)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(o.nproc),
               *cmd[1:]]
    stages.append(Stage("train", cmd, [data / DATASET_DIR / "train.parquet", data / DATASET_DIR / "valid.parquet",
                                       item_info, configs / "task2.json"], [paths["task2"] / "model.safetensors"]))
    stages.append(Stage("predict", step_cmd("predict"),
                        [data / DATASET_DIR / "test.parquet", paths["task2"] / "model.safetensors"],
                        [paths["prediction"] / "prediction.csv"]))
    # RUN_DIR/submission is the pipeline's own output: a re-run after an upstream change replaces it
    # (harness package builds beside it and swaps only a package that verifies)
    stages.append(Stage("package", harness_cmd("package", run, "--out", paths["submission"], "--track", track,
                                               "--overwrite"),
                        [paths["prediction"] / "prediction.csv", paths["task2"] / "model.safetensors", item_info],
                        [paths["submission"] / "MANIFEST.json"]))
    stages.append(Stage("verify", harness_cmd("verify", paths["submission"], "--data", data, "--track", track),
                        [paths["submission"] / "MANIFEST.json"], []))
    return stages, paths


def summarize(o: RunOptions, paths: dict, runner: Runner) -> dict:
    """Valid and test AUC next to the oracle and the naive scorers (test AUC only with ground truth)."""
    from referee.score import score

    track = o.track
    run_json = paths["task2"] / "run.json"
    ours_valid = json.loads(run_json.read_text()).get("best_valid_auc") if run_json.is_file() else None
    result = {"track": track, "column": TRACK_COLUMNS[track], "timings_s": runner.timings,
              "status": runner.status, "submission": str(paths["submission"]),
              "auc": {"ours": {"valid": ours_valid, "test": None}}}
    oracle = paths["data"] / "oracle" / "oracle.json"
    if oracle.is_file():
        doc = json.loads(oracle.read_text())
        result["world"] = {"name": doc.get("world"), "summary": doc.get("world_summary"), "scale": doc.get("scale")}
        s = score(paths["prediction"] / "prediction.csv", paths["data"] / "oracle" / "ground_truth.csv")
        result["auc"]["ours"]["test"] = s["scores"][f"AUC_{TRACK_COLUMNS[track]}"]
        for name in ("oracle", "oracle_item_only", "popularity", "random"):
            result["auc"][name] = {split: doc["auc"][split][name] for split in ("valid", "test")}
    return result


def render_table(result: dict) -> str:
    def fmt(x):
        return "-" if x is None else f"{x:.4f}"

    labels = {"ours": f"ours ({result['column']})", "oracle": "Bayes-optimal oracle",
              "oracle_item_only": "oracle without history", "popularity": "item popularity",
              "random": "random"}
    lines = []
    if result.get("world"):
        w = result["world"]
        lines += [f"generated data: scale {w['scale']}, world {w['name']} ({w['summary']})", ""]
    lines.append(f"{'scorer':<26}{'valid AUC':>10}{'test AUC':>10}")
    for key, label in labels.items():
        if key in result["auc"]:
            a = result["auc"][key]
            lines.append(f"{label:<26}{fmt(a['valid']):>10}{fmt(a['test']):>10}")
    lines.append("")
    lines.append(f"{'stage':<12}{'seconds':>8}  status")
    for name, secs in result["timings_s"].items():
        lines.append(f"{name:<12}{secs:>8.1f}  {result['status'].get(name, '')}")
    lines.append(f"{'total':<12}{sum(result['timings_s'].values()):>8.1f}")
    lines.append("")
    lines.append(f"submission (verified): {result['submission']}")
    return "\n".join(lines)


def plot_auc(result: dict, path: Path) -> None:
    """A bar chart of valid and test AUC: ours next to the oracle and the naive scorers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in ("random", "popularity", "oracle_item_only", "ours", "oracle") if k in result["auc"]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for i, split in enumerate(("valid", "test")):
        vals = [result["auc"][n][split] or 0.0 for n in names]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(names))], vals, width, label=split)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
    ax.set_ylim(0.45, 1.0)
    ax.set_ylabel("AUC")
    world = (result.get("world") or {}).get("name")
    ax.set_title(f"Track {result['track']} on the generated dataset (world {world}): ours against the oracle")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_options(f):
    """The options of ./reproduce.sh, shared by `harness preflight`."""
    options = [
        click.option("--out", "run_dir", type=click.Path(path_type=Path), default=None,
                     help="Run folder [default: runs/<scale> (runs/<scale>-<world> for another world) or runs/real]."),
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     help="A real MicroLens_1M_MMCTR folder (validated first). Default: generate one."),
        click.option("--scale", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True,
                     help="Size of the generated dataset."),
        click.option("--world", type=click.Choice(list(WORLDS)), default=DEFAULT_WORLD, show_default=True,
                     help="What clicks depend on in the generated dataset (harness synth --world)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        track_option(help="1: Task 1 only (DIN baseline), 2: Task 2 only (provided embeddings), 3: both."),
        click.option("--hardware", type=click.Choice(sorted(HARDWARE)), default="cpu", show_default=True,
                     help="t4: batch sizes and fp16 that fit a 16 GB T4."),
        click.option("--profile", type=click.Choice(["offline", "reference"]), default=None,
                     help="Task 1 encoders [default: offline on generated data, reference on real data]."),
        click.option("--image-model", default=None, help="Task 1 image model: hub id or local folder."),
        click.option("--text-model", default=None, help="Task 1 text model: hub id or local folder."),
        click.option("--image-model-license", default=None, metavar="SPDX",
                     help="The image model's licence (e.g. mit) where its files state none (a local folder)."),
        click.option("--text-model-license", default=None, metavar="SPDX",
                     help="The text model's licence (e.g. mit) where its files state none (a local folder)."),
        click.option("--reducer", type=click.Choice(["pca", "contrastive"]), default=None,
                     help="Task 1's reduction to 128-d [default: pca, as the reference solution]."),
        click.option("--epochs", type=int, default=None, help="Override Task 2's maximum epochs."),
        click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Train Task 2 in N processes (torchrun, DistributedDataParallel: one per GPU on CUDA, "
                          "gloo on the CPU); batch_size stays the global batch."),
        click.option("--strict", is_flag=True,
                     help="Any missing or unreadable cover is an error (else warnings, up to 1 % of the items)."),
        click.option("--force", is_flag=True, help="Redo every stage."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def resolve_options(run_dir, data, scale, world, seed, device, track, hardware, profile, image_model, text_model,
                    image_model_license, text_model_license, reducer, epochs, strict, force, nproc=1) -> RunOptions:
    """The options as the stages use them. `--device cuda` without CUDA is left for the preflight to report."""
    if data is not None:
        data = data.resolve()
        if not data.is_dir():
            raise UserError("no such data folder; pass the MicroLens_1M_MMCTR folder that holds "
                            f"{DATASET_DIR}/ and item_feature.parquet", path=data)
    default_dir = "real" if data else scale if world == DEFAULT_WORLD else f"{scale}-{world}"
    run_dir = (run_dir or ROOT / "runs" / default_dir).resolve()
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return RunOptions(run_dir=run_dir, data=data, scale=scale, world=world, seed=seed, device=device, track=int(track),
                      hardware=hardware, profile=profile or ("reference" if data else "offline"),
                      image_model=image_model, text_model=text_model, image_model_license=image_model_license,
                      text_model_license=text_model_license, reducer=reducer, epochs=epochs, strict=strict,
                      force=force, nproc=nproc)


def preflight(opts: RunOptions, hashes: HashCache | None = None):
    from harness.preflight import run_preflight

    return run_preflight(opts, hashes=hashes, hardware=HARDWARE, task1_overrides=task1_overrides(opts))


@click.command("reproduce", context_settings={"help_option_names": ["-h", "--help"]})
@run_options
def reproduce(**kwargs) -> int:
    """Take a machine from nothing to a verified submission and print the results table."""
    t0 = time.perf_counter()
    opts = resolve_options(**kwargs)
    run_dir = opts.run_dir
    hashes = HashCache(run_dir / "stamps" / "hashes.json")
    report = preflight(opts, hashes)
    for c in report.warnings:
        click.echo(f"warning: {c.line()}", err=True)
    if report.failures:
        for c in report.failures:
            click.echo(f"error: {c.line()}", err=True)
        click.echo(f"preflight: {len(report.failures)} problem(s) in {report.seconds:.1f}s; no stage was started "
                   f"(harness preflight takes the same options)", err=True)
        raise click.exceptions.Exit(report.exit_code)
    click.echo(f"[preflight] passed in {report.seconds:.1f}s ({len(report.warnings)} warning(s))", err=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "preflight.json", report.to_dict())
    hashes.save()
    stages, paths = build_stages(opts)
    runner = Runner(run_dir, force=opts.force, hashes=hashes)
    runner.timings["preflight"] = round(report.seconds, 1)
    runner.status["preflight"] = f"passed ({len(report.warnings)} warning(s))"
    for stage in stages:
        runner.run(stage)
    result = summarize(opts, paths, runner)
    result["options"] = {k: str(v) for k, v in dataclasses.asdict(opts).items()}
    result["preflight"] = {"seconds": round(report.seconds, 3), "warnings": [c.line() for c in report.warnings],
                           "known_data": report.facts.get("known_data"), "record": str(run_dir / "preflight.json")}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    if "oracle" in result["auc"]:
        plot_auc(result, run_dir / "auc_vs_oracle.png")
    write_json_atomic(run_dir / "results.json", result)
    click.echo(render_table(result))
    click.echo(f"results: {run_dir / 'results.json'}")
    return 0


@click.command("preflight", context_settings={"help_option_names": ["-h", "--help"]})
@run_options
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON document on stdout.")
def preflight_cmd(as_json: bool, **kwargs) -> int:
    """Check in seconds what could make ./reproduce.sh fail late (same options); writes nothing.

    Exit 0 when the run can start (warnings allowed), 1 for data or model problems, 2 for usage and
    environment problems. Each problem is one line on stderr, naming it and the fix."""
    report = preflight(resolve_options(**kwargs))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        from harness.preflight import render

        click.echo(render(report))
    for c in report.failures:
        click.echo(f"error: {c.line()}", err=True)
    return report.exit_code


def main() -> None:
    from core.cli import run_click

    run_click(reproduce, prog_name="reproduce.sh")


if __name__ == "__main__":
    main()
