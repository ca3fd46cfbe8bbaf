"""Task 2 across worlds: the default model, the plain baseline and DIN, each trained to its plateau.

    python bench/bench_task2.py [--worlds item,history,mean,recent] [--scale demo] [--data-seeds 0]
                                [--models SASRecDCN,MeanPoolMLP,DIN] [--seeds 0] [--jobs 2] [--threads 1]
    python bench/bench_task2.py --sweep SWEEP.json [--only a,b] [--worlds ...]     # named configs instead
    python bench/bench_task2.py --data DATA_DIR [--models ...]                      # one dataset of yours
    python bench/bench_task2.py --world-set bench/worlds/heldout.json [--models ...] # a fixed set of sampled worlds
    python bench/bench_task2.py --out ALL.json --merge PART.json [--merge ...]     # runs made in parallel

For every world (`harness synth --world W`, generated once under --cache) and every model, one child
process trains with `task2.train.train` until its own stopping rule ends it, predicts the test split with
`task2.predict.predict` (Track 2: the dataset's item_info) and scores it against the oracle's
ground_truth.csv. A child reports valid and test AUC, the epoch curve, why training stopped, seconds per
epoch, training and prediction samples/s, its peak resident memory, and the model's FLOPs per training
sample measured with `torch.utils.flop_counter.FlopCounterMode` on training batches (forward and
backward, at the data's history lengths). `--jobs` children run at once, each on `--threads` threads.

The JSON (bench/results/task2_worlds_<scale>[_<tag>]_<date>.json, or --out) holds, per world, the
reference AUCs (Bayes oracle, history-blind oracle, popularity, random) and, per model, every run and the
mean and seed-to-seed spread of its AUCs; the table printed at the end is the README's. It is rewritten
after every finished run and keeps the rows of an existing --out file that are not re-run, so a long
benchmark can be run in stages. Choose settings on valid AUC only; test AUC is reported, never used to
choose.

A sweep file maps a config name to TrainConfig overrides ("model" merges into the model config; keys
starting with "_" are comments), e.g. {"default": {}, "plain": {"model_class": "MeanPoolMLP"},
"lr2e-3": {"learning_rate": 0.002}}.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = {  # the named models of a plain run: TrainConfig overrides
    "SASRecDCN": {},
    "MeanPoolMLP": {"model_class": "MeanPoolMLP"},
    "DIN": {"model_class": "DIN"},
}


# ---------------------------------------------------------------------------------------------
# One run, in a child process


def flops_per_sample(model, split, batch_size: int, max_len: int, length_aware: bool) -> dict:
    """Forward and forward+backward FLOPs per sample (`bench/flops.py`: count_flops) over up to 8 training
    batches drawn as training draws them (so at the data's history lengths)."""
    import torch

    from task2.data import iterate_batches
    from flops import count_flops

    gen = torch.Generator().manual_seed(0)
    fwd = train = rows = 0
    for i, batch in enumerate(iterate_batches(split, batch_size, max_len=max_len, shuffle=True, generator=gen,
                                              length_aware=length_aware)):
        if i == 8:
            break
        f, t = count_flops(model, (batch["item_seq"], batch["item_id"], batch["likes_level"], batch["views_level"]))
        fwd, train, rows = fwd + f, train + t, rows + len(batch["rows"])
    return {"forward": round(fwd / rows), "train": round(train / rows)}


def child(spec: dict) -> dict:
    """Train, predict, score one (data, config, seed); return the measurements."""
    import resource

    import polars as pl
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from core.metrics import auc
    from task2.data import read_item_info, read_split, split_path
    from task2.registry import build_model
    from task2.predict import predict
    from task2.train import load_train_config, train

    cfg = load_train_config(None, **spec["overrides"])
    out = Path(spec["out"])
    log = out.parent / f"{out.name}.log"
    out.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        run = train(spec["data"], out / "run", cfg, log=lambda m: print(m, file=f, flush=True), progress=False)
    doc = predict(out / "run", spec["data"], out / "pred", track=1 if cfg.model_class == "DIN" else 2)
    truth = pl.read_csv(Path(spec["data"]) / "oracle" / "ground_truth.csv")
    pred = pl.read_csv(out / "pred" / "prediction.csv")
    epochs = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    args = json.loads((out / "run" / "model_args.json").read_text())
    config = json.loads((out / "run" / "config.json").read_text())["train"]

    items = read_item_info(split_path(spec["data"], "item_info"), emb_dim=None)
    model = build_model(args, items.item_emb, items.item_tags)
    tr = read_split(split_path(spec["data"], "train"), n_items=items.n_items)
    flops = flops_per_sample(model, tr, config["batch_size"], args["config"]["max_len"], config["length_aware"])
    return {
        "model_class": cfg.model_class,
        "valid_auc": run["best_valid_auc"],
        "valid_auc_se": run.get("best_valid_auc_se"),
        "valid_loss": run.get("best_valid_loss"),
        "valid_loss_epoch1": epochs[0]["valid_loss"],
        "base_rate_valid_loss": run.get("base_rate_valid_loss"),
        "test_auc": auc(truth["label"].to_numpy(), pred[doc["column"]].to_numpy()),
        "best_epoch": run["best_epoch"],
        "epochs_run": run["epochs_run"],
        "stop_reason": run["stop_reason"],
        "valid_auc_by_epoch": [round(e["valid_auc"], 5) for e in epochs],
        "seconds_per_epoch": round(run["timings_s"]["train"] / run["epochs_run"], 2),
        "train_seconds": run["timings_s"]["train"],
        "train_samples_per_s": run["train_samples_per_s"],
        "predict_samples_per_s": doc["samples_per_s"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "flops_per_sample": flops,
        "train_config": config,
        "model_args": args,
    }


# ---------------------------------------------------------------------------------------------
# The parent: datasets, jobs, the JSON and the table


def dataset(cache: Path, scale: str, world: str, seed: int, params: dict | None = None) -> Path:
    """The generated dataset for (scale, world, seed), or for a sampled world's full `params` (a world set's
    entry, named `world`), made once under `cache`."""
    from harness.synth import generate

    path = cache / (f"{world}_s{seed}" if params else f"{scale}_{world}_s{seed}")
    done = path / "oracle" / "oracle.json"
    recorded = json.loads(done.read_text()) if done.is_file() and params else None
    if recorded and ({k: recorded["config"].get(k) for k in params["synth"]} != params["synth"]
                     or {k: recorded["world_config"].get(k) for k in params["world"]} != params["world"]):
        raise click.UsageError(f"{path} holds another world than {world}'s parameters; remove it or pass --cache")
    if not done.is_file():
        click.echo(f"generating {path} ...", err=True)
        if params:
            generate(path, seed=seed, world="random", world_params=params, overwrite=True)
        else:
            generate(path, scale=scale, seed=seed, world=world, overwrite=True)
    return path


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    if proc.returncode:
        return {"error": f"exit {proc.returncode}; log: {spec['out']}.log"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 5), "min": round(min(values), 5), "max": round(max(values), 5),
            "n": len(values), "sd": round(statistics.stdev(values), 5) if len(values) > 1 else None}


def summarise(rows: list[dict]) -> dict:
    """Per world and config: valid/test AUC mean and spread over the seeds, their share of the oracle."""
    out: dict = {}
    for r in rows:
        if "error" in r:
            continue
        out.setdefault(r["world"], {}).setdefault(r["config"], []).append(r)
    summary = {}
    for world, by_cfg in out.items():
        summary[world] = {}
        for name, rs in by_cfg.items():
            summary[world][name] = {
                "valid_auc": spread([r["valid_auc"] for r in rs]), "test_auc": spread([r["test_auc"] for r in rs]),
                "test_share_of_oracle": round(statistics.fmean(r["test_auc"] / r["reference_auc"]["test"]["oracle"]
                                                               for r in rs), 5),
                "best_epoch": [r["best_epoch"] for r in rs], "epochs_run": [r["epochs_run"] for r in rs],
                "seconds_per_epoch": round(statistics.fmean(r["seconds_per_epoch"] for r in rs), 2),
                "train_seconds": round(statistics.fmean(r["train_seconds"] for r in rs), 1),
                "train_flops_per_sample": rs[0]["flops_per_sample"]["train"],
                "valid_loss_below_base_rate": all(r.get("valid_loss_epoch1", 1e9) < r.get("base_rate_valid_loss", 0)
                                                  and r.get("valid_loss", 1e9) < r.get("base_rate_valid_loss", 0)
                                                  for r in rs),
            }
    return summary


DEFAULT_NAMES, PLAIN_NAMES = ("SASRecDCN", "default"), ("MeanPoolMLP", "plain")  # --models runs, sweep files


def set_summary(summary: dict, worlds: list[str]) -> dict:
    """Over a set of worlds: each config's mean and worst test AUC share of the oracle, and the default's
    record against the plain baseline (a win, a tie within the larger seed spread, or a loss), under the
    names `--models` gives them or the ones the sweep files use."""
    out: dict = {}
    names = {n for w in worlds for n in summary.get(w, {})}
    default = next((n for n in DEFAULT_NAMES if n in names), DEFAULT_NAMES[0])
    plain = next((n for n in PLAIN_NAMES if n in names), PLAIN_NAMES[0])
    for name in sorted(names):
        shares = [summary[w][name]["test_share_of_oracle"] for w in worlds if name in summary.get(w, {})]
        calibrated = [summary[w][name].get("valid_loss_below_base_rate") for w in worlds if name in summary.get(w, {})]
        out[name] = {"worlds": len(shares), "mean_share_of_oracle": round(statistics.fmean(shares), 5),
                     "worst_share_of_oracle": round(min(shares), 5),
                     "valid_loss_below_base_rate": f"{sum(bool(c) for c in calibrated)}/{len(calibrated)}"}
    record = {"win": [], "tie": [], "loss": []}
    for w in worlds:
        a, b = summary.get(w, {}).get(default), summary.get(w, {}).get(plain)
        if a is None or b is None:
            continue
        gap = a["test_auc"]["mean"] - b["test_auc"]["mean"]
        noise = max(x["test_auc"]["max"] - x["test_auc"]["min"] for x in (a, b))
        record["win" if gap > 0 else "tie" if gap >= -noise else "loss"].append(w)
    if default in out:
        out[default]["against_" + plain] = record
    return out


def render(doc: dict) -> str:
    lines = []
    for world, entry in doc["worlds"].items():
        sets = entry["datasets"]
        a = {split: {k: statistics.fmean(d["reference_auc"][split][k] for d in sets)
                     for k in ("oracle", "oracle_item_only", "popularity")} for split in ("valid", "test")}
        lines.append(f"world {world} ({doc['scale']}): oracle {a['valid']['oracle']:.4f}/{a['test']['oracle']:.4f}, "
                     f"history-blind oracle {a['valid']['oracle_item_only']:.4f}/{a['test']['oracle_item_only']:.4f}, "
                     f"popularity {a['valid']['popularity']:.4f}/{a['test']['popularity']:.4f} (valid/test"
                     + (f", mean of {len(sets)} datasets)" if len(sets) > 1 else ")"))
        head = f"  {'config':<24}{'valid AUC':>10}{'test AUC':>10}{'x oracle':>9}{'spread':>8}{'best/run':>16}{'s/epoch':>9}{'MFLOP':>8}"
        lines += [head, "  " + "-" * (len(head) - 2)]
        for name, s in sorted(doc["summary"].get(world, {}).items(), key=lambda kv: -kv[1]["valid_auc"]["mean"]):
            sp = s["test_auc"]["max"] - s["test_auc"]["min"]
            runs = ",".join(f"{b}/{e}" for b, e in zip(s["best_epoch"], s["epochs_run"]))
            lines.append(f"  {name:<24}{s['valid_auc']['mean']:>10.4f}{s['test_auc']['mean']:>10.4f}"
                         f"{s['test_share_of_oracle']:>9.4f}{sp:>8.4f}{runs:>16}{s['seconds_per_epoch']:>9.1f}"
                         f"{s['train_flops_per_sample'] / 1e6:>8.2f}")
        lines.append("")
    lines.append("(valid/test AUC: mean over seeds; spread: max - min test AUC over seeds; best/run: best epoch / "
                 "epochs run per seed; MFLOP: training FLOPs per sample, forward + backward)")
    overall = set_summary(doc["summary"], list(doc["worlds"]))
    if overall:
        lines += ["", f"over {len(doc['worlds'])} world(s): test AUC as a share of the oracle's",
                  f"  {'config':<24}{'mean':>8}{'worst':>8}{'valid BCE < base rate':>24}"]
        for name, s in sorted(overall.items(), key=lambda kv: -kv[1]["mean_share_of_oracle"]):
            lines.append(f"  {name:<24}{s['mean_share_of_oracle']:>8.4f}{s['worst_share_of_oracle']:>8.4f}"
                         f"{s['valid_loss_below_base_rate']:>24}")
            if "against_MeanPoolMLP" in s:
                r = s["against_MeanPoolMLP"]
                lines.append(f"  {'':<24}against MeanPoolMLP: {len(r['win'])} wins, {len(r['tie'])} ties within the seed "
                             f"spread, {len(r['loss'])} losses" + (f" ({', '.join(r['loss'])})" if r["loss"] else ""))
    return "\n".join(lines)


def load_sweep(path: Path, only: str | None) -> dict:
    configs = json.loads(path.read_text())
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for k, v in configs.items() if not k.startswith("_")):
        raise click.UsageError(f"{path}: expected an object of name -> TrainConfig overrides")
    configs = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in configs.items()
               if not k.startswith("_")}
    names = only.split(",") if only else list(configs)
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise click.UsageError(f"{path}: no config named {', '.join(unknown)}")
    return {n: configs[n] for n in names}


def row_key(r: dict) -> tuple:
    """A run's identity in the JSON: one row per (world, data seed, config, training seed)."""
    return r["world"], r["data_seed"], r["config"], r["seed"]


def merge(out: Path, files: tuple[Path, ...]) -> None:
    """Fold the rows, worlds and commands of `files` into `out` (a row of `out` wins over an equal key)."""
    from core.io import write_json_atomic

    docs = [json.loads(p.read_text()) for p in files]
    base = json.loads(out.read_text()) if out.is_file() else dict(docs[0], rows=[], commands=[], worlds={})
    rows = {row_key(r): r for d in docs for r in d["rows"]}
    rows.update({row_key(r): r for r in base["rows"]})
    worlds = {}
    for d in [*docs, base]:
        for w, entry in d["worlds"].items():
            mine = worlds.setdefault(w, {"summary": entry["summary"], "datasets": []})
            seen = {x["data_seed"] for x in mine["datasets"]}
            mine["datasets"] += [x for x in entry["datasets"] if x["data_seed"] not in seen]
    base.update(rows=sorted(rows.values(), key=lambda r: (r["world"], r["config"], r["data_seed"], r["seed"])),
                worlds=worlds, commands=list(dict.fromkeys(  # once each: a file merged into itself adds none
                    base["commands"] + [c for d in docs for c in d["commands"]]
                    + [" ".join(["bench/bench_task2.py", *sys.argv[1:]])])))
    # parts from different world sets (or scales): the label names them all rather than the first file's alone
    labels = (part for d in [base, *docs] if d.get("scale") for part in str(d["scale"]).split(" + "))
    base["scale"] = " + ".join(dict.fromkeys(labels)) or None
    base["summary"] = summarise(base["rows"])
    base["set_summary"] = set_summary(base["summary"], list(base["worlds"]))
    write_json_atomic(out, base)
    click.echo(render(base))
    click.echo(f"merged {len(files)} file(s) into {out}: {len(base['rows'])} runs")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--worlds", default="item,history,mean,recent", show_default=True, help="Comma list of worlds.")
@click.option("--scale", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True)
@click.option("--data-seeds", default="0", show_default=True, help="Comma list of dataset seeds.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              help="One dataset (with oracle/) instead of the generated worlds.")
@click.option("--world-set", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A fixed set of sampled worlds (bench/worlds/*.json) instead of --worlds.")
@click.option("--set-worlds", help="With --world-set: comma list of the world names to run, in this order "
              "(default: all, in the file's order).")
@click.option("--models", default="SASRecDCN,MeanPoolMLP,DIN", show_default=True,
              help=f"Comma list of: {', '.join(MODELS)}.")
@click.option("--sweep", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="JSON of named TrainConfig overrides, run instead of --models.")
@click.option("--only", help="With --sweep: comma list of the config names to run.")
@click.option("--seeds", default="0", show_default=True, help="Comma list of training seeds.")
@click.option("--epochs", type=int, help="Override every config's epoch cap.")
@click.option("--jobs", type=int, default=2, show_default=True, help="Children at once.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per child.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench"), show_default=True,
              help="Where generated datasets live.")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench_runs"), show_default=True)
@click.option("--tag", default="", help="Suffix of the default JSON name.")
@click.option("--out", type=click.Path(path_type=Path), help="JSON path [default: bench/results/task2_worlds_...].")
@click.option("--merge", "merge_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Train nothing: fold these result JSONs (runs made at the same time, or on other machines) "
                   "into --out, and print the table.")
@click.option("--child", "child_spec", hidden=True)
def main(worlds, scale, data_seeds, data_dir, world_set, set_worlds, models, sweep, only, seeds, epochs, jobs,
         threads, cache, workdir, tag, out, merge_files, child_spec):
    """Train the Task 2 models on every world to their plateau; one JSON, one table."""
    if child_spec:
        print(json.dumps(child(json.loads(child_spec))))
        return
    if merge_files:
        if out is None:
            raise click.UsageError("--merge needs --out, the JSON the runs are folded into")
        merge(out, merge_files)
        return
    if sweep is not None:
        configs = load_sweep(sweep, only)
    else:
        unknown = [m for m in models.split(",") if m not in MODELS]
        if unknown:
            raise click.UsageError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
        configs = {m: MODELS[m] for m in models.split(",")}
    if epochs is not None:
        configs = {k: dict(v, epochs=epochs) for k, v in configs.items()}
    if data_dir is not None:
        datasets = {(data_dir.name, 0): data_dir.resolve()}
    elif world_set is not None:
        entries = json.loads(world_set.read_text())["worlds"]
        wanted = set_worlds.split(",") if set_worlds else [e["name"] for e in entries]
        unknown = sorted(set(wanted) - {e["name"] for e in entries})
        if unknown:
            raise click.UsageError(f"{world_set}: no world named {', '.join(unknown)}")
        by_name = {e["name"]: e for e in entries}  # in --set-worlds' order: list the largest first to finish sooner
        datasets = {(name, int(s)): dataset(cache, "sampled", name, int(s), by_name[name]["params"])
                    for name in wanted for s in data_seeds.split(",")}
        scale = f"set {world_set.stem}"
    else:
        datasets = {(w, int(s)): dataset(cache, scale, w, int(s)) for w in worlds.split(",")
                    for s in data_seeds.split(",")}
    references = {}
    for (world, dseed), path in datasets.items():
        doc = json.loads((path / "oracle" / "oracle.json").read_text())
        references[(world, dseed)] = {
            "path": str(path), "data_seed": dseed, "summary": doc.get("world_summary", ""),
            "reference_auc": {split: {k: doc["auc"][split][k] for k in ("oracle", "oracle_item_only", "popularity",
                                                                         "random")} for split in ("valid", "test")}}
    stamp = dt.date.today().isoformat()
    label = data_dir.name if data_dir is not None else world_set.stem if world_set is not None else scale
    out = out or RESULTS / f"task2_worlds_{label}{'_' + tag if tag else ''}_{stamp}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    jobs_list = []
    for (world, dseed), path in datasets.items():
        for name, overrides in configs.items():
            for seed in (int(s) for s in seeds.split(",")):
                spec = {"world": world, "data_seed": dseed, "config": name, "seed": seed, "threads": threads,
                        "data": str(path), "overrides": dict(overrides, seed=seed),
                        "out": str(workdir / f"{world}_s{dseed}" / f"{name}_seed{seed}")}
                jobs_list.append(spec)
    rows = {row_key(r): r for r in previous.get("rows", [])}
    commands = previous.get("commands", []) + [" ".join(["bench/bench_task2.py", *sys.argv[1:]])]

    def finish(spec: dict, res: dict) -> None:
        ref = references[(spec["world"], spec["data_seed"])]
        row = {k: spec[k] for k in ("world", "data_seed", "config", "seed")}
        row.update(overrides=spec["overrides"], reference_auc=ref["reference_auc"], **res)
        rows[row_key(row)] = row
        worlds_doc = dict(previous.get("worlds", {}))
        for (w, dseed), r in references.items():
            entry = worlds_doc.setdefault(w, {"summary": r["summary"], "datasets": []})
            entry["datasets"] = [d for d in entry["datasets"] if d["data_seed"] != dseed] + [
                {k: r[k] for k in ("data_seed", "path", "reference_auc")}]
        doc = {
            "benchmark": "task2_worlds", "commands": commands, "date": dt.datetime.now(dt.timezone.utc).isoformat(
                timespec="seconds"), "scale": scale if data_dir is None else None,
            "selection": "choose on valid AUC only; test AUC is reported, never used to choose",
            "machine": machine(), "load_average_at_write": list(os.getloadavg()), "jobs": jobs,
            "threads_per_job": threads, "worlds": worlds_doc,
            "rows": sorted(rows.values(), key=lambda r: (r["world"], r["config"], r["data_seed"], r["seed"])),
        }
        doc["summary"] = summarise(doc["rows"])
        doc["set_summary"] = set_summary(doc["summary"], list(doc["worlds"]))
        from core.io import write_json_atomic

        write_json_atomic(out, doc)
        msg = res.get("error") or (f"valid {res['valid_auc']:.4f} test {res['test_auc']:.4f}, best epoch "
                                   f"{res['best_epoch']}/{res['epochs_run']}, {res['seconds_per_epoch']:.1f} s/epoch")
        click.echo(f"[{spec['world']} s{spec['data_seed']} {spec['config']} seed {spec['seed']}] {msg}", err=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(spec, pool.submit(run_child, spec)) for spec in jobs_list]
        for spec, fut in futures:
            finish(spec, fut.result())
    doc = json.loads(out.read_text())
    click.echo(render(doc))
    click.echo(f"{len(jobs_list)} runs in {time.perf_counter() - t0:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
