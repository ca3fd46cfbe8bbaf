"""Write the two fixed sets of sampled worlds that Task 2's defaults are chosen and judged on.

    python bench/make_world_sets.py            # writes bench/worlds/tuning.json and bench/worlds/heldout.json

Each world is `harness.worlds.sample_world_params(world_seed, n_train)`: a size from a ladder fixed here,
everything else drawn from the seed (the held-out set also fixes item_emb_d128's scale, so that the set
spans 0.01 to 30 whatever the seeds draw). The files hold every drawn parameter, so a later change of the
sampler does not move a set: `harness synth --world-params` reads an entry's `params` as they stand.

- tuning: defaults are chosen on valid AUC over these worlds (and the four named ones);
- held-out: no choice looks at them. Each proposed default is run on them once and reported, whether it
  helps or not (bench/bench_task2.py --world-set bench/worlds/heldout.json).
- tuning_corner (added after held-out round 1): tuning worlds drawn from the corner round 1 fell short in.
- heldout2 (added with it): held-out round 2, half from the whole family, half from that corner.
- heldout3: held-out round 3, the same rule from new seeds, written before round 3's proposal was tuned.
- heldout4: held-out round 4, the same rule from new seeds, written before round 12 (round 4's proposal) ran.
- heldout5: held-out round 5, the same rule from new seeds, written after round 4 reported, before more tuning.
- tuning_large: heldout3-08, the world round 3 lost, redrawn with a validation split large enough to tune on.
- tuning_history: heldout4-03, a history world round 4 fell short in, redrawn with four times the training rows.
- tuning_history_small: heldout4-01, the other history world round 4 fell short in, with four times the rows.
- probe_outside: six draws with one factor each set outside the sampled ranges (many negatives, one-item or
  full-length histories, a catalogue larger than the rows, steep popularity, 5,000 rows): a robustness probe of
  the default against the plain baseline, never used to choose.
- tuning_segment: heldout4-04, a hidden-segment world round 4 fell short in, redrawn with four times the training rows.

Each set was written once, before any run on it; re-running this script rewrites the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.worlds import sample_world_params, users_needed, world_from_params

OUT = Path(__file__).resolve().parent / "worlds"


def heldout_round(n: int, first_seed: int, n_train: list[int], emb_scale: list[float]) -> dict:
    """Held-out round n >= 2: eight worlds from first_seed by round 2's rule (entries 02, 04, 06, 08 drawn from
    CORNER, the others from the whole family), with their sizes and table scales fixed here."""
    return {
        "purpose": f"never used to choose; held-out round {n}, for the proposal chosen after round {n - 1}",
        "seeds": f"from {first_seed}: entries 02, 04, 06, 08 the next seed in CORNER, the others the next seed",
        "first_seed": first_seed, "count": 8, "where": "alternate", "n_train": n_train, "emb_scale": emb_scale,
    }


def fourfold(source: str, index: int) -> dict:
    """Entry `index` of set `source` with four times the training rows and the users they need, every other
    factor unchanged (`more_rows`): a data limit told from a model limit."""
    return {
        "purpose": f"choose Task 2's defaults on valid AUC here: {source}-{index + 1:02d} with four times the "
                   "training rows",
        "from": [source, index], "rows_times": 4,
    }


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
    # Written after held-out round 1 (bench/results/task2_heldout_2026-12-06.json) fell short where the click
    # depends on one of many hidden segments with a strong taste for the items themselves (heldout-02: 32
    # segments, idiosyncrasy 0.97, two rows per user). The tuning set had only milder draws of that corner
    # (tuning-03/05: 32 segments, idiosyncrasy 0.2-0.3), so it gains draws from it: the first seeds from 1101
    # whose draw lands in CORNER, sizes fixed here. Chosen before any run on them.
    "tuning_corner": {
        "purpose": "choose Task 2's defaults on valid AUC here, beside tuning.json (the hard corner)",
        "seeds": "first 4 from 1101 in CORNER",
        "first_seed": 1101, "count": 4, "where": "corner",
        "n_train": [20_000, 30_000, 45_000, 70_000],
        "emb_scale": None,
    },
    # Held-out round 2: a new set for the proposal chosen after round 1 (round 1's set has seen one default and
    # its failure shaped the tuning set, so it is no longer blind). Half drawn from the whole family, half from
    # the corner; sizes from 15k to 500k rows and scales from 0.01 to 30 fixed here, before any run.
    "heldout2": heldout_round(2, 3001,
                              [15_000, 22_000, 32_000, 48_000, 75_000, 120_000, 220_000, 500_000],
                              [0.01, 30.0, 1.0, 0.1, 10.0, 0.3, 3.0, 0.03]),
    # Held-out round 3, for the proposal chosen after round 2 (written before that proposal's tuning round ran:
    # round 2's set has now seen a default, so it is no longer blind). The same rule as round 2 from new seeds.
    "heldout3": heldout_round(3, 4001,
                              [15_000, 20_000, 30_000, 50_000, 80_000, 150_000, 250_000, 500_000],
                              [30.0, 0.01, 0.3, 3.0, 0.03, 10.0, 0.1, 1.0]),
    # Held-out round 4, for the proposal chosen after round 3 (written before round 12's tuning ran: round 3's
    # set has seen two defaults and its one loss, heldout3-08, joins the tuning worlds). Same rule, new seeds.
    "heldout4": heldout_round(4, 5001,
                              [15_000, 24_000, 35_000, 55_000, 90_000, 160_000, 280_000, 500_000],
                              [0.1, 10.0, 0.01, 1.0, 30.0, 0.03, 3.0, 0.3]),
    # Held-out round 5, for the proposal chosen after round 4 (written once round 4 had reported round 12's
    # proposal, before any further tuning: round 4's set has seen a default and joins the tuning worlds).
    "heldout5": heldout_round(5, 6001,
                              [16_000, 25_000, 40_000, 60_000, 100_000, 180_000, 300_000, 500_000],
                              [3.0, 0.03, 30.0, 0.3, 0.01, 1.0, 0.1, 10.0]),
    # Round 12's tuning world of the kind held-out round 3 lost (written with it, before its runs): heldout3-08,
    # whose 4,600 validation rows give its valid AUC a standard error of 0.005, about twice the differences
    # tuning has to tell apart; the same world with 36,000 validation rows (6,000 more users, the data redrawn).
    "tuning_large": {
        "purpose": "choose Task 2's defaults on valid AUC here: a large catalogue, short histories, popularity-led",
        "from": ["heldout3", 7],
        "synth": {"n_valid": 36_000, "n_users": 97_639},
    },
    # After held-out round 4 (written with its report): heldout4-03, a history world the default and the plain
    # baseline both leave at 0.96 x the oracle, redrawn with four times the training rows (and the users they
    # need), to tell a data limit from a model limit in a world whose oracle edge is attainable in principle.
    "tuning_history": fourfold("heldout4", 2),
    # In round 14 (a diagnostic, like round 13): heldout4-04, a hidden-segment world where the default and a
    # correctly specified mixture fitted by EM both stop at 0.97 x the oracle, redrawn with four times the
    # training rows (pairs of rows: 82,500 more users), to tell a data limit from a model limit there too.
    "tuning_segment": fourfold("heldout4", 3),
    # After round 14 (written before its runs): heldout4-01, round 4's other history world short of the floor (15,000
    # rows, 342 items, 0.980 x the oracle), redrawn with four times the training rows (three rows per user: 15,000
    # more users), so that each kind of world round 4 missed in has been redrawn, not only one draw of it.
    "tuning_history_small": fourfold("heldout4", 0),
    # Round 15's probe (written before its runs): the hidden datasets are of "sizes and shapes this issue does not
    # describe", so each of these draws (seeds from 7001) has one factor set outside the family's ranges. It asks
    # only whether the default still holds against the plain baseline there; nothing is chosen on it.
    "probe_outside": {
        "purpose": "never used to choose: a robustness probe, one factor per world outside the sampled ranges",
        "seeds": [7001, 7002, 7003, 7004, 7005, 7006],
        "n_train": [40_000, 30_000, 25_000, 30_000, 50_000, 5_000],
        "emb_scale": None,
        "outside": [
            {"synth": {"negatives": 9}},  # ten rows per user (the family: 1 to 5 negatives)
            {"synth": {"hist_min": 1, "hist_mu": 0.0, "hist_sigma": 0.1, "hist_max": 1},  # one-item histories
             "world": {"target": "history", "history_beta": 3.0, "recency": 1.0, "idiosyncrasy": 0.0}},
            {"synth": {"hist_min": 40, "hist_mu": 3.0, "hist_sigma": 0.3, "n_segments": 32},  # full 64-long histories
             "world": {"target": "segment", "idiosyncrasy": 0.6, "history_beta": 0.0, "recency": 1.0}},
            {"synth": {"n_items": 25_000, "cold_share": 0.3}},  # more items than clicks (5,000: six rows per user), 30 % cold
            {"synth": {"zipf": 2.0}, "world": {"gamma": 2.5}},  # popularity far steeper
            {"synth": {"n_items": 300}},  # 5,000 training rows (the family: 15,000 or more)
        ],
    },
}


def in_corner(params: dict) -> bool:
    """The draws held-out round 1 fell short on: a hidden-segment world of 16 or more segments whose taste for
    the items themselves (idiosyncrasy) is at least 0.5."""
    w, s = params["world"], params["synth"]
    return w["target"] == "segment" and s["n_segments"] >= 16 and w["idiosyncrasy"] >= 0.5


def pick_seeds(spec: dict) -> list[int]:
    """The set's world seeds: listed, or drawn in order from first_seed under the set's `where` rule."""
    if isinstance(spec["seeds"], list):
        return spec["seeds"]
    seeds, seed = [], spec["first_seed"]
    while len(seeds) < spec["count"]:
        corner = in_corner(sample_world_params(seed))
        wanted = corner if spec["where"] == "corner" else (corner if len(seeds) % 2 else True)
        if wanted:
            seeds.append(seed)
        seed += 1
    return seeds


def more_rows(synth: dict, times: int) -> dict:
    """The synth factors that give `times` the training rows: the rows, and a user more per extra group of
    negatives + 1 rows (a user gives one group to one split)."""
    extra_users = (times - 1) * users_needed(synth["negatives"], synth["n_train"])
    return {"n_train": times * synth["n_train"], "n_users": synth["n_users"] + extra_users}


def build(name: str, spec: dict) -> dict:
    if "from" in spec:  # one world of another set, with some of its factors changed
        source, index = spec["from"]
        params = json.loads(json.dumps(build(source, SETS[source])["worlds"][index]["params"]))
        changed = spec.get("synth") or more_rows(params["synth"], spec["rows_times"])
        params["synth"].update(changed)
        params["world"]["summary"] += f", from {source} entry {index + 1} with {changed}"
        params["world"]["name"] = f"{name.replace('_', '-')}-01"
        world_from_params(params)
        return {"set": name, "purpose": spec["purpose"], "how": "bench/make_world_sets.py",
                "worlds": [{"name": params["world"]["name"], "world_seed": None, "params": params}]}
    worlds = []
    for i, (seed, n_train) in enumerate(zip(pick_seeds(spec), spec["n_train"], strict=True)):
        params = sample_world_params(seed, n_train=n_train)
        if spec["emb_scale"] is not None:
            params["synth"]["emb_scale"] = spec["emb_scale"][i]
        if "outside" in spec:  # factors set outside the drawn ranges; users enough for the rows (+5 %)
            params["synth"].update(spec["outside"][i].get("synth", {}))
            params["world"].update(spec["outside"][i].get("world", {}))
            s = params["synth"]
            need = users_needed(s["negatives"], s["n_train"], s["n_valid"], s["n_test"])
            s["n_users"] = max(s["n_users"], int(need * 1.05) + 1)
            params["world"]["summary"] += f", with {spec['outside'][i]}"
        params["world"]["name"] = f"{name.replace('_', '-')}-{i + 1:02d}"
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
