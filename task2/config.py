"""The one JSON -> config dataclass validator of Task 2's model and training configs."""

from __future__ import annotations

import dataclasses


def config_from_dict(cls, values: dict):
    """Build a config dataclass from JSON values; unknown keys and bad types raise ValueError."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(names)}")
    out = {}
    for key, value in values.items():
        default = names[key].default
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
                raise ValueError(f"{cls.__name__}.{key} must be a list of integers, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{cls.__name__}.{key} must be true or false, got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{cls.__name__}.{key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{cls.__name__}.{key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{cls.__name__}.{key} must be a string, got {value!r}")
        out[key] = value
    cfg = cls(**out)
    cfg.check()
    return cfg
