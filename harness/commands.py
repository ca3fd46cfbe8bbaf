"""CLI commands of the harness itself: validate, synth, score, fingerprint. Each parses, calls, renders."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from core.cli import track_option
from core.errors import UserError, exit_code_for
from harness.worlds import DEFAULT_WORLD, RANDOM_WORLD, WORLDS


def _echo_json(doc: dict) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--test", "test", type=click.Path(path_type=Path), default=None,
              help="test.parquet: a prediction's IDs must equal its IDs, in order.")
@click.option("--require-all", is_flag=True,
              help="An absent file that the pipeline's stages for --track read is an error.")
@track_option(help="With --require-all: whose stages (Track 2 reads no item_feature and no covers).")
@click.option("--strict", is_flag=True,
              help="Any missing or unreadable cover is an error (else warnings, up to 1 % of the items).")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON document on stdout.")
def validate_cmd(path: Path, test: Path | None, require_all: bool, track: int, strict: bool, as_json: bool) -> int:
    """Check a data root (every file found) or one parquet/CSV file. Exit 0 valid, 1 findings, 2 usage/I-O."""
    from core.validate import render, validate_path

    t0 = time.perf_counter()
    report = validate_path(path, test=test, require_all=require_all, strict=strict, track=track)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(render(report))
    _log(f"validated in {time.perf_counter() - t0:.1f}s")
    return exit_code_for(report.findings)


@click.command("synth")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--scale", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True,
              help="Sizes of a named world (a sampled world draws its own).")
@click.option("--world", type=click.Choice([*WORLDS, RANDOM_WORLD]), default=DEFAULT_WORLD, show_default=True,
              help="What clicks depend on: item (like the real data: the target item decides most), history "
                   "(hidden taste segments read from the history), mean (the history's average), recent "
                   "(its most recent items), or random: a sampled world, every factor drawn from --world-seed "
                   "(sizes, negatives, histories, tags, popularity, cold items, what a click depends on, and "
                   "item_emb_d128's scale, offset, anisotropy and signal).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data drawn from the world.")
@click.option("--world-seed", type=int, help="With --world random: the seed its factors are drawn from "
              "[default: --seed].")
@click.option("--world-params", type=click.Path(path_type=Path, dir_okay=False),
              help='JSON {"synth": {...}, "world": {...}} overriding factors of the world (any of the fields '
                   "oracle/oracle.json's config and world_config list); a file of both in full reproduces a "
                   "world exactly.")
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists (only once the new one is complete).")
@click.option("--json", "as_json", is_flag=True, help="Print oracle.json on stdout.")
def synth_cmd(out_dir: Path, scale: str, world: str, seed: int, world_seed: int | None, world_params: Path | None,
              overwrite: bool, as_json: bool) -> int:
    """Write a MicroLens-shaped dataset with a known Bayes-optimal answer into OUT_DIR."""
    from core.config import read_json_object
    from harness.synth import generate

    if world_seed is not None and world != RANDOM_WORLD:
        raise UserError("--world-seed draws a sampled world; pass it with --world random")
    params = None
    if world_params is not None:
        params = read_json_object(world_params, "world parameters file")
        if not isinstance(params.get("synth", {}), dict) or not isinstance(params.get("world", {}), dict):
            raise UserError('world parameters must be {"synth": {...}, "world": {...}}', path=world_params)
        params = {k: params[k] for k in ("synth", "world") if k in params}
    try:
        doc = generate(out_dir, scale=scale, seed=seed, overwrite=overwrite, log=_log, world=world,
                       world_seed=world_seed, world_params=params)
    except UserError as e:
        if world_params is not None and e.path is None and str(e).startswith("world parameters"):
            raise UserError(str(e), path=world_params) from None
        raise
    if as_json:
        _echo_json(doc)
    else:
        a = doc["auc"]
        c = doc["config"]
        click.echo(f"wrote {out_dir} (scale {doc['scale']}, world {doc['world']}, seed {seed}; "
                   f"{c['n_train']:,} train rows, {c['n_items']:,} items) in {doc['timings_s']['total']:.1f}s; "
                   f"AUC valid/test: oracle {a['valid']['oracle']:.4f}/{a['test']['oracle']:.4f}, "
                   f"popularity {a['valid']['popularity']:.4f}/{a['test']['popularity']:.4f}")
    return 0


@click.command("fingerprint")
def fingerprint_cmd() -> int:
    """Print the environment fingerprint (Python, packages, torch/CUDA/cuDNN, GPU, git) as JSON."""
    from core.env import fingerprint

    _echo_json(fingerprint())
    return 0
