"""Write the two fixed sets of sampled worlds that Task 2's defaults are chosen and judged on.

    python bench/make_world_sets.py            # writes bench/worlds/tuning.json and bench/worlds/heldout.json

Each world is `harness.worlds.sample_world_params(world_seed, n_train)`: a size from a ladder fixed here,
everything else drawn from the seed (the held-out set also fixes item_emb_d128's scale, so that the set
spans 0.01 to 30 whatever the seeds draw). The files hold every drawn parameter, so a later change of the
sampler does not move a set: `harness synth --world-params` reads an entry's `params` as they stand.

- tuning: defaults are chosen on valid AUC over these worlds (and the four named ones);
- held-out: no choice looks at them. Each proposed default is run on them once and reported, whether it
  helps or not (bench/bench_task2.py --world-set bench/worlds/heldout.json).

The sets were written once, before any tuning; re-running this script rewrites the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.worlds import sample_world_params, world_from_params

OUT = Path(__file__).resolve().parent / "worlds"
SETS = {
    "tuning": {
        "purpose": "choose Task 2's defaults on valid AUC here",
        "seeds": [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008],
        "n_train": [15_000, 18_000, 22_000, 28_000, 36_000, 50_000, 70_000, 100_000],
        "emb_scale": None,  # as drawn
    },
    "heldout": {
        "purpose": "never used to choose; each proposed default is reported here once",
        "seeds": [2001, 2002, 2003, 2004, 2005, 2006, 2007, 2008],
        "n_train": [15_000, 25_000, 40_000, 65_000, 100_000, 160_000, 260_000, 500_000],
        "emb_scale": [3.0, 0.01, 30.0, 0.1, 1.0, 0.03, 10.0, 0.3],
    },
}


def build(name: str, spec: dict) -> dict:
    worlds = []
    for i, (seed, n_train) in enumerate(zip(spec["seeds"], spec["n_train"])):
        params = sample_world_params(seed, n_train=n_train)
        if spec["emb_scale"] is not None:
            params["synth"]["emb_scale"] = spec["emb_scale"][i]
        params["world"]["name"] = f"{name}-{i + 1:02d}"
        world_from_params(params)  # every entry must build
        worlds.append({"name": params["world"]["name"], "world_seed": seed, "params": params})
    return {"set": name, "purpose": spec["purpose"], "how": "bench/make_world_sets.py", "worlds": worlds}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, spec in SETS.items():
        doc = build(name, spec)
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        for w in doc["worlds"]:
            s, wd = w["params"]["synth"], w["params"]["world"]
            print(f"{w['name']}: {s['n_train']:>7,} rows, {s['n_items']:>6,} items, {s['negatives']} neg, "
                  f"{wd['target']:<7} scale {s['emb_scale']:<7g} offset {s['emb_offset']:>6.2f} "
                  f"noise {s['emb_noise']:.2f} gamma {wd['gamma']:.2f} beta {wd['beta']:.2f}")


if __name__ == "__main__":
    main()
