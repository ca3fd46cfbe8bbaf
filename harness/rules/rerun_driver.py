"""Runs inside a re-run subprocess, beside (never inside) the package copy; not imported by the harness.

    python -B rerun_driver.py RECORD PACKAGE_ROOT MODE RUN_DIR -- MODULE ARG...

Makes the package copy the only source of `task1`, `task2` and `harness` (the copy first on sys.path;
editable-install finders that would map those names to another checkout are removed), then runs
`python -m MODULE ARG...` in this process. MODE `predict` also records, with a global forward hook,
every nn.Module that ran forward, and afterwards rebuilds the declared class with the package's own
`task2.model.build_model` and loads the checkpoint with `load_state_dict(strict=True)`. MODE `plain`
only runs the module. The record (JSON) goes to RECORD; the exit code is the module's.

The submission's code runs here with the user's rights: this is evidence for an honest submission,
not a sandbox (a hostile one could forge the record; run untrusted packages in a throwaway container).
"""

import json
import os
import runpy
import sys

BANNED = ("xgboost", "lightgbm", "catboost", "sklearn.ensemble", "sklearn.tree", "thundergbm", "ngboost",
          "torchensemble")


def _isolate(package_root):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [package_root] + [p for p in sys.path
                                    if p and "__editable__" not in p and os.path.abspath(p) != here]
    sys.meta_path[:] = [f for f in sys.meta_path
                        if "__editable__" not in (getattr(f, "__module__", "") or "")
                        and "__editable__" not in type(f).__module__]
    sys.path_importer_cache.clear()


def _qual(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _origins(package_root):
    root = os.path.realpath(package_root)
    out = {}
    for name in ("task1", "task2", "harness"):
        mod = sys.modules.get(name)
        if mod is not None:
            where = os.path.realpath(getattr(mod, "__file__", "") or "")
            out[name] = {"file": where, "inside": where.startswith(root + os.sep)}
    return out


def main():
    record_path, package_root, mode, run_dir = sys.argv[1:5]
    if sys.argv[5] != "--":
        raise SystemExit("usage: rerun_driver.py RECORD PACKAGE_ROOT MODE RUN_DIR -- MODULE ARG...")
    module, args = sys.argv[6], sys.argv[7:]
    _isolate(package_root)
    record = {"mode": mode, "module": module}
    seen = {}
    handle = None
    if mode == "predict":
        import torch

        def hook(mod, _inputs, _output):
            seen.setdefault(id(mod), mod)

        handle = torch.nn.modules.module.register_module_forward_hook(hook)
    sys.argv = [module, *args]
    rc = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if handle is not None:
        handle.remove()
    record["rc"] = rc
    record["origins"] = _origins(package_root)
    record["banned_loaded"] = sorted(m for m in sys.modules
                                     if any(m == b or m.startswith(b + ".") for b in BANNED))
    if mode == "predict":
        record["forward"], record["strict_load"] = _inspect(seen, run_dir)
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    sys.exit(rc)


def _inspect(seen, run_dir):
    mods = list(seen.values())
    inner = set()
    for m in mods:
        for c in m.modules():
            if c is not m:
                inner.add(id(c))
    roots = [m for m in mods if id(m) not in inner]
    forward = {"modules": sorted({_qual(m) for m in mods}), "roots": sorted(_qual(m) for m in roots),
               "declared_class": None, "outside_declared": []}
    strict = {"ok": False, "message": "not attempted"}
    try:
        with open(os.path.join(run_dir, "model_args.json"), encoding="utf-8") as f:
            args = json.load(f)
        from task2.model import MODEL_CLASSES, build_model

        declared = MODEL_CLASSES[args["model_class"]][0]
        forward["declared_class"] = f"{declared.__module__}.{declared.__qualname__}"
        allowed = set()
        for r in roots:
            if type(r) is declared:
                allowed |= {id(c) for c in r.modules()}
        forward["outside_declared"] = sorted({_qual(m) for m in mods if id(m) not in allowed})
        from safetensors.torch import load_file

        model = build_model(args)
        model.load_state_dict(load_file(os.path.join(run_dir, "model.safetensors")), strict=True)
        strict = {"ok": True, "message": f"{len(model.state_dict())} tensors loaded strictly into "
                                         f"{args['model_class']}"}
    except Exception as e:  # the record says what failed; the verifier turns it into a finding
        strict = {"ok": False, "message": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
    return forward, strict


if __name__ == "__main__":
    main()
