"""One config story for the project: a JSON object read once, checked field by field against a dataclass.

Task 1's settings (task1.config.Task1Config), Task 2's training and model configs (task2.train.TrainConfig,
the model config dataclasses) all go through `from_dict`, so an unknown key or a value of the wrong type is
the same one line everywhere: "unknown key `contrastive.lr_x`; known keys: ..." or "`epochs` must be an
integer, got '3'", and the command line adds the file's name.

Why typed dataclasses and this one validator rather than pydantic: the configs are flat records (two of
Task 1's are nested), their defaults are their documentation, model_args.json must round-trip through
`dataclasses.asdict` exactly, and the rules read the same dataclasses without importing a validation
library. The type of each field is the type of its default: bool, int (not bool), float (int accepted),
str, a tuple (from a JSON list; its items typed like the default's first item), a dict, or a nested
dataclass (from a JSON object, checked the same way). A dataclass's own `check()` then judges the values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from core.errors import UserError

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def read_json_object(path: str | Path, what: str = "config file") -> dict:
    """The JSON object in `path`; a missing file, bad JSON or another JSON type is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found; pass an existing JSON file", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{what} is not valid JSON ({e})", path=path) from None
    if not isinstance(data, dict):
        raise UserError(f"{what} must hold a JSON object of settings", path=path)
    return data


def _scalar(kind: type, value, label: str):
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ValueError(f"{label} must be {_KINDS.get(kind, kind.__name__)}, got {value!r}")
    return value


def from_dict(cls, values: dict, base=None, where: str = ""):
    """`base` (default: `cls()`) with `values` applied, each checked against the type of its default.

    Raises ValueError (one line, naming the key) on an unknown key or a wrong type, and whatever the
    dataclass's `check()` raises; callers turn it into a UserError naming the file.
    """
    if not isinstance(values, dict):
        raise ValueError(f"`{where.rstrip('.') or cls.__name__}` must be an object of {cls.__name__} fields")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown key `{where}{unknown[0]}`; known keys: {', '.join(sorted(names))}")
    base = cls() if base is None else base
    out = {}
    for key, value in values.items():
        default, label = getattr(base, key), f"`{where}{key}`"
        if dataclasses.is_dataclass(default):
            value = value if isinstance(value, type(default)) else from_dict(type(default), value, default, f"{where}{key}.")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{label} must be a list, got {value!r}")
            if default:
                kind = type(default[0])
                if not all(isinstance(v, kind) and not (kind is int and isinstance(v, bool)) for v in value):
                    raise ValueError(f"{label} must be a list of {_PLURAL.get(kind, kind.__name__)}, got {value!r}")
            value = tuple(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{label} must be an object, got {value!r}")
        elif type(default) in _KINDS:
            value = _scalar(type(default), value, label)
        out[key] = value
    cfg = dataclasses.replace(base, **out)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg
