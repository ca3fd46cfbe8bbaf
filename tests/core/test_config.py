"""core.config: one loader and one error format for every config of the project."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from core.config import from_dict, read_json_object
from core.errors import UserError


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    ks: tuple = (10, 50)


@dataclass(frozen=True)
class Outer:
    name: str = "a"
    epochs: int = 3
    fp16: bool = True
    inner: Inner = field(default_factory=Inner)
    model: dict = field(default_factory=dict)

    def check(self):
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")


@pytest.mark.parametrize("values,message", [
    ({"epoch": 2}, "unknown key `epoch`; known keys: epochs, fp16, inner, model, name"),
    ({"inner": {"lr_x": 1}}, "unknown key `inner.lr_x`; known keys: ks, lr"),
    ({"epochs": "3"}, "`epochs` must be an integer, got '3'"),
    ({"epochs": True}, "`epochs` must be an integer, got True"),
    ({"fp16": 1}, "`fp16` must be true or false, got 1"),
    ({"name": 3}, "`name` must be a string, got 3"),
    ({"inner": {"lr": "fast"}}, "`inner.lr` must be a number, got 'fast'"),
    ({"inner": {"ks": [10, "x"]}}, "`inner.ks` must be a list of integers, got [10, 'x']"),
    ({"inner": 5}, "`inner` must be an object of Inner fields"),
    ({"model": [1]}, "`model` must be an object, got [1]"),
    ({"epochs": 0}, "epochs must be >= 1"),
])
def test_every_mistake_is_one_line_naming_the_key(values, message):
    with pytest.raises(ValueError) as e:
        from_dict(Outer, values)
    assert str(e.value) == message


def test_values_land_typed_on_the_base():
    base = Outer(name="profile")
    cfg = from_dict(Outer, {"epochs": 5, "inner": {"lr": 1, "ks": [5]}}, base=base)
    assert cfg == Outer(name="profile", epochs=5, inner=Inner(lr=1.0, ks=(5,)))
    assert isinstance(cfg.inner.lr, float) and base.epochs == 3


def test_read_json_object_names_the_file(tmp_path):
    path = tmp_path / "c.json"
    with pytest.raises(UserError, match="not found"):
        read_json_object(path)
    path.write_text("{bad")
    with pytest.raises(UserError, match="not valid JSON") as e:
        read_json_object(path)
    assert str(path) in e.value.one_line()
    path.write_text("[1]")
    with pytest.raises(UserError, match="must hold a JSON object"):
        read_json_object(path)
    path.write_text(json.dumps({"a": 1}))
    assert read_json_object(path) == {"a": 1}
