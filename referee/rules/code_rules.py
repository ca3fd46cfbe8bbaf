"""Rules read from the code (Python AST, never imported): only code the reader can follow, no tree
models or ensembles, Task 1 and Task 2 disjoint, no pretrained model behind the CTR model.

Imports are followed transitively through the package's own modules: task2 -> harness.x -> y counts
as task2 using y. Every route pysource knows is covered (import statements, import_module/__import__
calls with constant names, attribute chains on imported modules, getattr with constant names, exec of
constant code). CODE-DYNAMIC is an allowlist review of the competitor's own code (the files of task1/
and task2/ that are not a release's reference files): it may import what referee.facts.ALLOWED_IMPORTS
names (the project's API, the model and data libraries, a short list of the standard library that
cannot reach the system; Task 1 also its encoders' libraries), and nothing else; it may not reach code
without an import the reader can follow (dunder attributes, getattr/setattr/hasattr with a computed
name or passed as a value, globals/vars/locals, exec/eval/compile), file descriptors or /proc, processes
or threads, code hidden in data (pickle, marshal, torch.load without weights_only, trust_remote_code),
or a source encoding other than UTF-8. Each finding names the construct, so an organizer can accept
one knowingly. `--rerun` adds what actually ran (referee.sandbox.rerun_driver's audit hook), and the
sandbox around it is the boundary the kernel enforces.
"""

from __future__ import annotations

import re
from collections import deque
from fnmatch import fnmatchcase

from core.errors import error, warning
from referee.rules.registry import rule
from referee.facts import (ALLOWED_DUNDERS, ALLOWED_IMPORTS, BANNED, BANNED_PACKAGES, DENIED_BUILTINS,  # noqa: F401
                           DENIED_MODULES, PRETRAINED, PRETRAINED_TENSORS, PROCESS_PATHS, SYSTEM_MODULES)
from referee.inspection.pysource import matches

# what the competitor's code may use of the released harness (the rest is the verifier's machinery,
# which can import and run things on a caller's behalf)
HARNESS_API = ("harness.__version__",
               # the same API where it lived in releases before core/ (their packages are still verified)
               "harness.errors", "harness.io", "harness.seeding", "harness.metrics", "harness.schemas",
               "harness.env", "harness.cli.run_click")
FORMAT_DUNDER = re.compile(r"\{[^{}]*__\w")  # "{0.__globals__}", "{x[__builtins__]}"
CORE = "core"  # the shared layer (errors, io, seeding, schemas, ...): all of it is competitor-facing API


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
    def build() -> dict[str, set[str]]:
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
        return graph

    return ctx.memo(("import_graph",), build)


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
        # banned names in strings are weak evidence: reported where Task 2 runs (computed imports are
        # CODE-DYNAMIC's errors)
        own_code = (name in task2_side and not _own(name, "harness") and not _own(name, CORE)
                    or _own(name, "scripts"))
        reported = set()
        for ref in mod.imports:
            hit = matches(ref.module, BANNED)
            if hit and (ref.line, hit) not in reported:
                reported.add((ref.line, hit))
                out.append(error(rid, f"line {ref.line}: imports {ref.module} ({ref.route}): tree models and "
                                 "ensembles are not allowed", mod.path))
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
    out += runtime_banned(ctx, rid)
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
    """Findings from the re-run's record of the modules that ran forward (see referee.rerun)."""
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
    return out


def runtime_banned(ctx, rid: str) -> list:
    """Banned modules the re-runs imported, however the import was spelled (the audit hook's import
    events and the modules loaded at the end)."""
    out = []
    for step, res in _rerun_steps(ctx):
        seen = set(res.get("banned_loaded") or [])
        seen |= {m for m in (res.get("imports") or []) if isinstance(m, str) and matches(m, BANNED)}
        seen |= {e.get("what") for e in ((res.get("events") or {}).get("import") or [])
                 if isinstance(e, dict) and isinstance(e.get("what"), str) and matches(e["what"], BANNED)}
        tops = sorted({matches(m, BANNED) for m in seen if matches(m, BANNED)})
        for mod in tops[:5]:
            out.append(error(rid, f"re-run ({step}): {mod} was imported", ctx.one("task2_checkpoint") or "."))
    return out


def _rerun_steps(ctx):
    rerun = ctx.rerun or {}
    pred = rerun.get("predict")
    if isinstance(pred, dict) and not pred.get("skipped"):
        yield "predict", pred
    full = rerun.get("full")
    if isinstance(full, dict):
        for step in full.get("steps") or []:
            if isinstance(step, dict):
                yield str(step.get("name", "full")), step


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


# ---------------------------------------------------------------------------------------------
# CODE-DYNAMIC


def competitor_modules(ctx) -> dict:
    """The modules of task1/ and task2/ that are not a release's file at the same path (name -> ModuleSource).
    (harness/ and scripts/ must equal a release as a whole: PKG-RELEASED-CODE; Python files anywhere else
    break PKG-LAYOUT.)"""
    def find() -> dict:
        from referee.released import REFERENCE_DIRS, reference_hashes

        ref = reference_hashes()
        out = {}
        for name, mod in ctx.modules().items():
            if mod.path.split("/")[0] not in REFERENCE_DIRS:
                continue
            try:
                digest = ctx.sha256(mod.path)
            except OSError:
                digest = None
            if digest is None or digest not in ref.get(mod.path, ()):
                out[name] = mod
        return out

    return ctx.memo(("competitor_modules",), find)


def _denied(module: str) -> str | None:
    for pattern, why in DENIED_MODULES.items():
        if pattern.endswith("*"):
            if fnmatchcase(".".join(module.split(".")[:2]), pattern):
                return why
        elif module == pattern or module.startswith(pattern + "."):
            return why
    return None


def dynamic_reason(module: str, side: str = "task2", own_modules=frozenset()) -> str | None:
    """Why competitor code on `side` (task1 or task2) may not reach `module` (None when it may): the
    allowlist (referee.facts.ALLOWED_IMPORTS), its denials, and modules reached through another's attribute
    (`own_modules`, the package's own module names, are modules, not attributes)."""
    if _own(module, "referee"):
        return "the verifier's own machinery (the referee), which competitor code may not use"
    if _own(module, "harness") and module != "harness":
        return None if matches(module, HARNESS_API) else (
            "the verifier's own machinery, outside what competitor code may use of the harness ("
            + ", ".join(HARNESS_API) + ")")
    allowed = {**ALLOWED_IMPORTS["both"], **ALLOWED_IMPORTS.get(side, {})}
    parts = module.split(".")
    why = None
    key = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in allowed), None)
    members = allowed.get(key) if key else None
    if key and isinstance(members, tuple):
        rest = parts[len(key.split(".")):]
        if rest and rest[0] not in members:
            why = _denied(module) or (f"{key}.{rest[0]} is not among what competitor code may use of {key} ("
                                      f"{', '.join(members)})")
    elif key:
        why = _denied(module)
    else:
        why = _denied(module) or "not on the allowlist of what competitor code may import (README, \"What " \
                                 "`harness verify` checks\"); an organizer can accept it knowingly"
    if why:
        return why
    depth = len(key.split(".")) if key else 1
    for i in range(depth, len(parts)):  # torch.os.system, pathlib.os: judged as the module reached
        if parts[i] in SYSTEM_MODULES and ".".join(parts[:i + 1]) not in own_modules:
            inner = dynamic_reason(".".join(parts[i:]), side)
            if inner:
                return f"reaches {parts[i]} through {'.'.join(parts[:i])}: {inner}"
    return None


def _use_reason(use) -> str | None:
    if use.kind == "builtin":
        why = DENIED_BUILTINS.get(use.what)
        return f"uses {use.what}: {why}" if why else None
    if use.kind == "attr":
        if use.what in ALLOWED_DUNDERS:
            return None
        return f"reaches .{use.what}: introspection that leads to code and modules without an import"
    if use.kind == "getattr":
        return f"getattr/setattr on module {use.what} with a computed name: it could reach anything"
    if use.kind == "reflect":
        return (f"{use.what} with a computed attribute name: it could reach any attribute, dunders included; "
                "use the attribute itself or a literal name")
    if use.kind == "vars":
        return f"vars()/dir() of module {use.what}: reaches its members by computed names"
    if use.kind == "fd":
        return f"{use.what}: opens a file descriptor by number (the verifier's channels among them)"
    if use.kind == "call":
        kws = dict(kw.split("=", 1) for kw in use.detail.split(", ") if "=" in kw)
        if use.what == "trust_remote_code":
            return None if kws.get("trust_remote_code") == "False" else (
                f"{use.detail}: runs code downloaded with a model; only trust_remote_code=False is allowed")
        if use.what.startswith("torch.") and (kws.get("weights_only") != "True" and "weights_only" in kws
                                              or "pickle_module" in kws or "**?" in use.detail):
            return f"{use.what}({use.detail}): unpickles arbitrary objects; load weights with weights_only=True"
        if use.what.startswith("numpy.") and (kws.get("allow_pickle") not in (None, "False") or "**?" in use.detail):
            return f"{use.what}({use.detail}): unpickles arbitrary objects"
    return None


@rule("CODE-DYNAMIC", "the competitor's own code (task1/, task2/ files that are not released reference files) "
      "imports only what the allowlist names (referee.facts.ALLOWED_IMPORTS) and reaches nothing the reader "
      "cannot follow: no dunder introspection, getattr/setattr with a computed name, globals/vars/locals, "
      "exec/eval/compile, file descriptors, processes or threads, pickle/marshal, harness internals; UTF-8 only")
def check_dynamic(ctx):
    rid = "CODE-DYNAMIC"
    out = []
    own = frozenset(ctx.modules())
    for _name, mod in sorted(competitor_modules(ctx).items()):
        if mod.error:
            out.append(error(rid, f"{mod.error}: code the verifier cannot read cannot be reviewed", mod.path))
            continue
        if mod.encoding.lower() not in ("utf-8", "utf-8-sig"):
            out.append(error(rid, f"declares the source encoding {mod.encoding}: Python decodes it differently "
                             "from what an editor or a reviewer reads; save it as UTF-8 without a coding line",
                             mod.path))
        found: dict[tuple[int, str], str] = {}  # (line, what) -> why; one finding per line
        # `from a import b` records a and a.b: the names imported are judged, not the module they come from
        extended = {(r.line, r.module.rsplit(".", 1)[0]) for r in mod.imports if r.route == "from" and "." in r.module}
        for ref in mod.imports:
            if ref.route == "from" and (ref.line, ref.module) in extended:
                continue
            if ref.module == "?":
                found.setdefault((ref.line, "?"), "imports or runs a name computed at run time")
                continue
            why = dynamic_reason(ref.module, mod.path.split("/")[0], own)
            if why:
                found.setdefault((ref.line, ref.module.split(".")[0]), f"{ref.module} ({ref.route}): {why}")
        for use in mod.uses:
            why = _use_reason(use)
            if why:
                found.setdefault((use.line, use.what), why)
        for text, line in mod.strings:
            if FORMAT_DUNDER.search(text):
                found.setdefault((line, text), f"the format string {text[:60]!r} reaches a dunder attribute "
                                 "(str.format follows .__x__ fields): introspection without an import")
            if text.startswith(PROCESS_PATHS):
                found.setdefault((line, text), f"names {text!r}: the process's own descriptors and memory, or a "
                                 "host's sockets (the verifier's channels among them)")
        by_line: dict[int, list[str]] = {}
        for (line, _key), why in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1] == "?", kv[0][1])):
            if why not in by_line.setdefault(line, []):
                by_line[line].append(why)
        for line, whys in sorted(by_line.items()):
            out.append(error(rid, f"line {line}: {'; '.join(whys)}", mod.path))
    return out
