"""Rules about the models: Task 2's checkpoint (format, one model, features), Track 1's baseline, the
item embeddings Task 2 froze (Track 2: the provided ones; Tracks 1 and 3: Task 1's, and nothing else).

How "one model" is checked: the checkpoint's header (names, dtypes, shapes) must equal the state
dict of the one declared class rebuilt from model_args.json. The expected layout comes only from code
the verifier trusts, never from the manifest (which the submitter writes): when the package's
task2/*.py are byte-identical to the verifier's own task2 package, the verifier's
`task2.registry.build_model` builds it on the meta device; when they differ, only `--rerun` builds the
declared class from the package's code, inside the sandbox, and reports its layout and the strict
load (`load_state_dict(strict=True)`); static verify alone then cannot prove it and says so as an
error. (`harness package` passes the layout it built from the packaged code on the submitter's own
machine.) Every file is also judged by its content, whatever its name or role (referee.inspection.content):
weights outside the checkpoint, containers the layout has no place for, data hidden in a PNG, a
parquet file or a safetensors header, and text that looks like a model's parameters are findings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from core.errors import error, warning
from core.package_format import WEIGHT_SUFFIXES, code_tree_hashes, expected_state_from
from referee.inspection import formats
from referee.rules.registry import rule
from referee.rules.code_rules import competitor_modules
from referee.inspection.context import MANIFEST
from referee.inspection.pysource import class_forward_params, name_uses
from referee.facts import (BASELINE_DIN_TRAIN, BASELINE_KEYS_ADDED, DIN_BASELINE_MODEL as BASELINE_DIN,
                           TRACK1_DATA_DERIVED, TRACK1_TUNABLE_MODEL, TRACK1_TUNABLE_TRAIN)
from referee.released import TRUSTED_DIRS



ALLOWED_RUN_INPUTS = {"train", "valid", "item_info"}
ALLOWED_PREDICT_INPUTS = {"model.safetensors", "model_args.json", "test.parquet"}
MAX_ITEM_INFO_BYTES = 1024**3  # Task 1's item_info.parquet (a full one is ~100 MB)
USER_PARAMS = {"user_id", "user_ids", "uid", "uids", "userid"}
USER_TENSOR = re.compile(r"(^|[._])(user|users|uid)(_?ids?|_?embs?|_?embeddings?|_?table)?([._]|$)", re.I)


# ---------------------------------------------------------------------------------------------
# the declared class, rebuilt from trusted code


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def trusted_expected_state(ctx, args: dict) -> tuple[dict | None, str]:
    """(signature, how) from the verifier's own task2 when the package's task2/*.py equal it; else (None, why)."""
    return ctx.memo(("trusted_state",), lambda: _trusted_expected_state(ctx, args))


def _trusted_expected_state(ctx, args: dict) -> tuple[dict | None, str]:
    import importlib.util

    result: tuple[dict | None, str]
    spec = importlib.util.find_spec("task2")
    if spec is None or not spec.submodule_search_locations:
        result = (None, "the verifier has no task2 package of its own")
    elif _inside(Path(list(spec.submodule_search_locations)[0]), ctx.root) or (
            "task2" in sys.modules and _inside(Path(getattr(sys.modules["task2"], "__file__", None) or "/"), ctx.root)):
        result = (None, "the verifier's task2 would be the package's own (the current folder shadows it); run "
                  "`harness verify` from outside the package")
    else:
        own = code_tree_hashes(Path(list(spec.submodule_search_locations)[0]))
        theirs = {rel[len("task2/"):]: ctx.sha256(rel) for rel in ctx.files()
                  if rel.startswith("task2/") and rel.endswith(".py")}
        if own != theirs:
            result = (None, "the package's task2 code differs from the verifier's")
        else:
            from task2.registry import build_model

            try:
                result = (expected_state_from(build_model, args), "rebuilt with the verifier's identical task2")
            except (ValueError, TypeError, KeyError) as e:
                result = (None, f"model_args.json does not rebuild the declared class: {e}")
    return result


def _diff(actual: dict, expected: dict) -> list[str]:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(actual) & set(expected) if list(actual[k][1]) != list(expected[k][1])
                   or actual[k][0] != expected[k][0])
    out = []
    if extra:
        out.append(f"{len(extra)} tensor(s) the declared class does not have (first: {', '.join(extra[:4])}): "
                   "a second model's weights?")
    if missing:
        out.append(f"{len(missing)} tensor(s) of the declared class missing (first: {', '.join(missing[:4])})")
    for k in wrong[:4]:
        out.append(f"{k}: {actual[k][0]} {actual[k][1]} in the file, the declared class has "
                   f"{expected[k][0]} {expected[k][1]}")
    return out


def content_findings(ctx, rid: str) -> list:
    """Every file judged by its content: weights and containers only where the layout allows them, and
    nothing hidden inside the allowed ones (referee.inspection.content)."""
    from referee.inspection import content
    from referee.inspection.context import printable

    out = []
    for rel in ctx.files():
        if rel.split("/")[0] in TRUSTED_DIRS:
            continue  # PKG-RELEASED-CODE holds them to a release
        if ctx.roles().get(rel) == "task2_checkpoint" and rel != ctx.one("task2_checkpoint"):
            continue  # a second checkpoint: counted above
        try:
            kind = content.kind_of(ctx, rel)
            allowed = content.allowed_kinds(ctx, rel)
            if kind in ("text", "empty") or kind in allowed:
                problems = content.hidden_data(ctx, rel, kind)
            elif kind == "pickle":
                continue  # PKG-HYGIENE reports pickles
            elif kind in content.WEIGHT_KINDS or rel.lower().endswith(WEIGHT_SUFFIXES):
                problems = [f"a weights file besides the one Task 2 checkpoint ({kind}, role "
                            f"{ctx.roles().get(rel)}): a second model?"]
            else:
                problems = [f"a {kind} file where the layout has no place for one: it could hold another model's "
                            "weights"]
        except (OSError, formats.FormatError) as e:
            problems = [f"cannot be checked for hidden weights ({printable(str(e), 200)})"]
        for p in problems:
            out.append(error(rid, p, rel))
    return out


# ---------------------------------------------------------------------------------------------
# T2-CHECKPOINT-FORMAT and T2-SINGLE-MODEL


@rule("T2-CHECKPOINT-FORMAT", "the Task 2 checkpoint is a flat name -> tensor map in safetensors (or a torch "
      "zip whose pickle uses only weights-only globals); never unpickled otherwise")
def check_checkpoint_format(ctx):
    rid = "T2-CHECKPOINT-FORMAT"
    ck = ctx.checkpoint()
    if ck["rel"] is None:
        return []  # PKG-MANIFEST reports the missing checkpoint
    if ck["error"]:
        return [error(rid, ck["error"], ck["rel"])]
    if not ck["tensors"]:
        return [error(rid, "holds no tensors", ck["rel"])]
    if ck["format"] != "safetensors":
        return [warning(rid, "a torch zip checkpoint (loads with weights_only=True); safetensors is preferred",
                        ck["rel"])]
    return []


@rule("T2-SINGLE-MODEL", "exactly one Task 2 checkpoint, and it holds exactly the state of the one declared "
      "model class rebuilt from model_args.json (strict load; no second model inside)")
def check_single_model(ctx):
    rid = "T2-SINGLE-MODEL"
    out = []
    checkpoints = [rel for rel in ctx.with_role("task2_checkpoint") if rel in ctx.entries]
    reducers = ctx.with_role("task1_reducer")
    if len(checkpoints) > 1:
        out.append(error(rid, f"{len(checkpoints)} Task 2 checkpoints ({', '.join(checkpoints[:4])}): Task 2 is "
                         "a single model", checkpoints[1]))
    if len(reducers) > 1:
        out.append(error(rid, f"{len(reducers)} Task 1 reducers ({', '.join(reducers[:4])}); one is expected",
                         reducers[1]))
    out += content_findings(ctx, rid)
    ck = ctx.checkpoint()
    if ck["rel"] is None or ck["error"]:
        return out  # T2-CHECKPOINT-FORMAT / PKG-MANIFEST report it
    rel = ck["rel"]
    for p in ck["problems"]:
        out.append(error(rid, f"{p}: data outside the declared tensors could hide a second model", rel))
    args, why = ctx.model_args()
    if args is None:
        out.append(error(rid, f"model_args.json {why}; it must declare the one model class", ctx.one("task2_args")
                         or "model_args.json"))
        return out
    recorded = ctx.section("task2").get("expected_state")
    trusted, how = trusted_expected_state(ctx, args)
    res = (ctx.rerun or {}).get("predict") or {}
    declared = res.get("declared_state") if res.get("rc") == 0 else None
    if trusted is None and isinstance(ctx.expected_state, dict) and ctx.expected_state:
        trusted, how = ctx.expected_state, "built from the packaged code by `harness package`"
    if trusted is None and isinstance(declared, dict) and declared and not res.get("tampered"):
        trusted, how = declared, "built from the package's code in the re-run's sandbox"
        if any(m.path.startswith("task2/") for m in competitor_modules(ctx).values()):  # else a release's code
            out.append(warning(rid, "the declared class is the package's own (its task2 differs from the verifier's "
                               "own): its layout was reported by the package's code in the sandbox, "
                               "which is evidence, not proof; whether each of its tensors serves the one model is "
                               "for the organizer to read in task2/", rel))
    if trusted is not None:
        for msg in _diff(ck["tensors"], trusted):
            out.append(error(rid, f"{msg} ({args['model_class']}, {how})", rel))
        if isinstance(recorded, dict) and recorded and recorded != trusted:
            out.append(error(rid, "the manifest's expected_state differs from the declared class rebuilt "
                             "from model_args.json", MANIFEST))
    elif how.startswith("model_args.json"):
        out.append(error(rid, how, ctx.one("task2_args")))
    else:
        out.append(error(rid, f"{how}: the declared class's layout is not proven (the manifest's is the "
                         "submitter's word); run `harness verify --rerun predict`, which builds it from the "
                         "package's code in the sandbox", rel))
    strict = res.get("strict_load")
    if isinstance(strict, dict) and not strict.get("ok") and res.get("rc") == 0:
        out.append(error(rid, f"re-run: load_state_dict(strict=True) into {args['model_class']} failed: "
                         f"{str(strict.get('message'))[:300]}", rel))
    return out


# ---------------------------------------------------------------------------------------------
# T2-FEATURES


def _declared_class_params(ctx, class_name: str):
    for name, mod in ctx.modules().items():
        if name == "task2" or name.startswith("task2."):
            params = class_forward_params(mod, class_name)
            if params is not None:
                return params, mod.path
    return None, None


@rule("T2-FEATURES", "Task 2 reads only train/valid/test and item_info, and does not embed user_id "
      "(heuristic: inputs recorded, model config, forward's arguments, tensor names and table sizes)")
def check_features(ctx):
    """user_id is metadata: the baseline groups by it and the awarded solutions did not embed it.

    Evidence, strongest first: a recorded input beyond train/valid/item_info (error); a model config key
    or checkpoint tensor named after users (error); `forward` of the declared class taking user_id
    (error); an embedding table with as many rows as there are users in --data (error); any other use
    of the name user_id in task2 code (warning: grouping by user is allowed).
    """
    rid = "T2-FEATURES"
    out = []
    run = ctx.run_record()
    if run is not None and isinstance(run.get("inputs"), dict):
        extra = sorted(set(run["inputs"]) - ALLOWED_RUN_INPUTS)
        if extra:
            out.append(error(rid, f"Task 2 trained on more than the challenge's features: inputs "
                             f"{', '.join(extra)} beyond {', '.join(sorted(ALLOWED_RUN_INPUTS))}",
                             ctx.one("task2_record")))
    pred = ctx.predict_record()
    if pred is not None and isinstance(pred.get("inputs"), dict):
        extra = sorted(set(pred["inputs"]) - ALLOWED_PREDICT_INPUTS)
        if extra:
            out.append(error(rid, f"prediction read {', '.join(extra)} beyond the model and test.parquet",
                             ctx.one("prediction_record")))
    args, _ = ctx.model_args()
    cfg = args["config"] if args else {}
    for key in cfg:
        if "user" in key.lower() or key.lower() in USER_PARAMS:
            out.append(error(rid, f"model config key {key!r}: the model embeds users", ctx.one("task2_args")))
    train = (ctx.train_config() or {}).get("train")
    model_over = train.get("model") if isinstance(train, dict) else None
    for key in model_over if isinstance(model_over, dict) else ():
        if "user" in key.lower():
            out.append(error(rid, f"training config sets model.{key}: the model embeds users",
                             "outputs/task2/config.json"))
    if args:
        params, where = _declared_class_params(ctx, args["model_class"])
        if params is None:
            out.append(warning(rid, f"class {args['model_class']} is not defined in task2/: its inputs were not "
                               "checked", ctx.one("task2_args")))
        else:
            bad = [p for p in params if p.lstrip("*").lower() in USER_PARAMS]
            if bad:
                out.append(error(rid, f"{args['model_class']}.forward takes {', '.join(bad)}: user_id is not an "
                                 "allowed input feature", where))
    ck = ctx.checkpoint()
    tensors = ck["tensors"] if not ck["error"] else {}
    for name, (_dtype, shape) in tensors.items():
        if USER_TENSOR.search(name):
            out.append(error(rid, f"tensor {name} {shape}: named like a user embedding", ck["rel"]))
    n_items = cfg.get("n_items") if isinstance(cfg.get("n_items"), int) else None
    n_users = _max_user_id(ctx)
    for name, (_dtype, shape) in tensors.items():
        if len(shape) != 2 or n_items is None or shape[0] <= n_items:
            continue
        if n_users is not None and shape[0] in (n_users, n_users + 1):
            out.append(error(rid, f"tensor {name} has {shape[0]:,} rows: one per user id in train.parquet",
                             ck["rel"]))
        elif shape[0] > max(n_items, int(cfg.get("n_tags", 0) or 0)) * 2 and shape[0] >= 10_000:
            out.append(warning(rid, f"tensor {name} has {shape[0]:,} rows, far more than the {n_items:,} items: "
                               "what does it embed?", ck["rel"]))
    for name, mod in sorted(ctx.modules().items()):
        if name == "task2" or name.startswith("task2."):
            lines = name_uses(mod, "user_id")
            if lines:
                out.append(warning(rid, f"uses the name user_id (lines {', '.join(map(str, lines[:6]))}): "
                                   "grouping by user is allowed, embedding it is not", mod.path))
    return out


def _max_user_id(ctx) -> int | None:
    path = ctx.data_file("train")
    if path is None:
        return None
    def read() -> int | None:
        import polars as pl

        try:
            return int(pl.scan_parquet(path).select(pl.col("user_id").max()).collect().item())
        except Exception:  # an unreadable data file is `harness validate`'s business
            return None

    return ctx.memo(("max_user_id",), read)


# ---------------------------------------------------------------------------------------------
# T1-TRACK1-BASELINE


def _as_json(v):
    return list(v) if isinstance(v, tuple) else v


@rule("T1-TRACK1-BASELINE", "Track 1: the CTR model is the baseline DIN; only embedding_regularizer, "
      "net_regularizer, net_dropout, learning_rate and batch_size differ from the baseline config", tracks=(1,))
def check_track1_baseline(ctx):
    rid = "T1-TRACK1-BASELINE"
    args, why = ctx.model_args()
    rel = ctx.one("task2_args") or "model_args.json"
    if args is None:
        return [error(rid, f"model_args.json {why}", rel)]
    out = []
    if args["model_class"] != "DIN":
        return [error(rid, f"Track 1's CTR model is the baseline DIN, this package trained "
                      f"{args['model_class']}", rel)]
    cfg = args["config"]
    for key, base in BASELINE_DIN.items():
        if key not in cfg:
            out.append(error(rid, f"config lacks {key} (baseline {base!r})", rel))
        elif _as_json(cfg[key]) != base:
            out.append(error(rid, f"{key} = {cfg[key]!r}, the baseline has {base!r}; Track 1 may tune only "
                             f"{', '.join(TRACK1_TUNABLE_MODEL + TRACK1_TUNABLE_TRAIN)}", rel))
    known = set(BASELINE_DIN) | set(TRACK1_TUNABLE_MODEL) | set(TRACK1_DATA_DERIVED)
    for key in sorted(set(cfg) - known):
        out.append(error(rid, f"config key {key!r} is not part of the baseline DIN", rel))
    train = (ctx.train_config() or {}).get("train")
    if not isinstance(train, dict):
        out.append(warning(rid, 'config.json has no "train" object: the training was not compared with the '
                           "baseline's", "outputs/task2/config.json"))
        return out
    differ = [f"{key} = {train.get(key)!r} (baseline {base!r})" for key, base in BASELINE_DIN_TRAIN.items()
              if _as_json(train.get(key, base if key in BASELINE_KEYS_ADDED else None)) != base]
    if differ:
        out.append(warning(rid, "training differs from the baseline's: " + "; ".join(differ) + "; Track 1 may "
                           "tune only learning_rate and batch_size", "outputs/task2/config.json"))
    return out


# ---------------------------------------------------------------------------------------------
# the frozen item table


def _frozen_tables(ctx) -> dict[str, object]:
    """Name -> numpy array of the checkpoint's item_emb_d128 / item_tags buffers (safetensors only)."""
    ck = ctx.checkpoint()
    if ck["error"] or ck["format"] != "safetensors":
        return {}
    names = [n for n in ck["tensors"] if n.split(".")[-1] in ("item_emb_d128", "item_tags")]
    if not names:
        return {}
    from safetensors import safe_open

    out = {}
    with safe_open(str(ctx.path(ck["rel"])), framework="pt") as f:
        for n in names:
            out[n] = f.get_tensor(n).float().numpy() if n.endswith("item_emb_d128") else f.get_tensor(n).numpy()
    return out


def compare_item_table(ctx, rid: str, item_info_path, what: str) -> list:
    """The checkpoint's frozen item_emb_d128 (and item_tags) equal `item_info_path`'s, row for row."""
    import numpy as np
    import polars as pl

    ck_rel = ctx.checkpoint()["rel"]
    tables = _frozen_tables(ctx)
    embs = {n: t for n, t in tables.items() if n.endswith("item_emb_d128")}
    if not embs:
        return [error(rid, "no frozen item_emb_d128 table in the checkpoint: Task 2 must freeze the item "
                      f"embeddings of {what} into the model", ck_rel)]
    try:
        frame = pl.read_parquet(item_info_path, columns=["item_tags", "item_emb_d128"])
        emb = frame["item_emb_d128"].to_numpy()
        tags = frame["item_tags"].to_numpy()
    except Exception as e:  # polars raises several types for a broken file
        return [error(rid, f"cannot read item_emb_d128 and item_tags ({type(e).__name__})", str(item_info_path))]
    out = []
    ck_dtype = dict(ctx.checkpoint()["tensors"])
    for name, table in embs.items():
        # the model keeps float32 (or the stored dtype) of the float64 column: compare in that dtype, bit for bit
        want = emb.astype(np.float32) if ck_dtype[name][0] == "F32" else emb.astype(table.dtype)
        if table.shape != want.shape:
            out.append(error(rid, f"{name} has shape {list(table.shape)}, {what} has {list(want.shape)}", ck_rel))
        elif not np.array_equal(table.view(np.uint8), want.astype(table.dtype).view(np.uint8)):
            rows = int((table != want).any(axis=1).sum())
            out.append(error(rid, f"{name} differs from {what} in {rows:,} of {len(want):,} rows", ck_rel))
    for name, table in tables.items():
        if name.endswith("item_tags") and (table.shape != tags.shape or not np.array_equal(table, tags)):
            out.append(error(rid, f"{name} differs from {what}'s item_tags", ck_rel))
    return out


@rule("T2-TRACK2-EMBEDDINGS", "Track 2: the item embeddings are the provided item_info, byte for byte "
      "(needs --data)", tracks=(2,))
def check_track2_embeddings(ctx):
    rid = "T2-TRACK2-EMBEDDINGS"
    provided = ctx.data_file("item_info")
    if provided is None:
        return [warning(rid, "not checked: pass --data DATA_DIR (the provided item_info.parquet)",
                        ctx.one("task2_checkpoint") or ".")]
    from core.io import sha256_file

    out = []
    want = sha256_file(provided)
    run = ctx.run_record() or {}
    used = ((run.get("inputs") or {}).get("item_info") or {}).get("sha256")
    if used != want:
        out.append(error(rid, "Task 2 trained on an item_info.parquet that is not the provided one "
                         f"(sha256 {str(used)[:12]}..., provided {want[:12]}...)", ctx.one("task2_record")))
    own = ctx.one("task1_embeddings")
    if own is not None and ctx.sha256(own) != want:
        out.append(error(rid, "the package ships an item_info.parquet that differs from the provided one", own))
    out += compare_item_table(ctx, rid, provided, "the provided item_info")
    return out


@rule("T1-ITEM-INFO", "Tracks 1 and 3: Task 1's item_info.parquet follows the official schema and is "
      "exactly what Task 2 trained on and froze into its model (Task 2's only input from Task 1)",
      tracks=(1, 3))
def check_task1_item_info(ctx):
    from core.schemas import validate_item_info
    from core.validate import read_table

    rid = "T1-ITEM-INFO"
    rel = ctx.one("task1_embeddings")
    if rel is None:
        return []  # PKG-MANIFEST reports it
    out = []
    try:
        path = ctx.checked_path(rel, MAX_ITEM_INFO_BYTES)
    except OSError as e:
        return [error(rid, str(e), rel)]
    frame, problem = read_table(path, "item_info")
    if problem is not None:
        return [error(rid, problem.message, rel)]
    n_items = None
    data_info = ctx.data_file("item_info")
    if data_info is not None:
        import polars as pl

        n_items = pl.scan_parquet(data_info).select(pl.len()).collect().item() - 1
    for f in validate_item_info(frame, n_items=n_items, path=rel):
        out.append(error(rid, f"[{f.id}] {f.message}", rel))
    del frame
    run = ctx.run_record() or {}
    used = ((run.get("inputs") or {}).get("item_info") or {}).get("sha256")
    if used != ctx.sha256(rel):
        out.append(error(rid, f"Task 2 trained on another item_info (sha256 {str(used)[:12]}...) than the "
                         "packaged Task 1 output", ctx.one("task2_record")))
    out += compare_item_table(ctx, rid, ctx.path(rel), "Task 1's item_info")
    return out
