"""Blind to the units of item_emb_d128: SASRecDCN and MeanPoolMLP give the same logits (and take the same
first step) for a x + b as for x. Nothing promises the scale of the official table, and in Track 1 every
team submits its own; a model that read the raw values learned something different at every scale."""

from __future__ import annotations

import json

import pytest
import torch

from task2.din import DIN, DINConfig
from task2.model import SASRecDCN, SASRecDCNConfig
from task2.registry import build_model, model_args, upgrade_model_args
from task2.plain import MeanPoolMLP, MeanPoolMLPConfig

N_ITEMS = 60
E = 16


def _table(seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_ITEMS, E, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, E, dtype=torch.float64)
    x[0] = 0.0  # padding
    return x


def _transformed(x: torch.Tensor, a, b) -> torch.Tensor:
    """a x + b on the real rows (row 0 stays the padding zeros, as item_info requires), then float32 as
    task2.data.read_item_info gives it."""
    y = x * a + b
    y[0] = 0.0
    return y.float()


def _batch(b=8, l=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS, (b, l), generator=g)
    lengths = torch.randint(1, l + 1, (b,), generator=g)
    seq[torch.arange(l)[None, :] < (l - lengths)[:, None]] = 0
    return (seq, torch.randint(1, N_ITEMS, (b,), generator=g), torch.randint(1, 11, (b,), generator=g),
            torch.randint(1, 11, (b,), generator=g))


def _build(kind: str, table: torch.Tensor, norm: str):
    torch.manual_seed(0)
    if kind == "SASRecDCN":
        cfg = SASRecDCNConfig(n_items=N_ITEMS, item_emb_dim=E, id_emb_dim=8, max_len=10, n_heads=2, ffn_dim=32,
                              mlp_dims=(16,), dropout=0.0, id_dropout=0.0, item_emb_norm=norm)
        return SASRecDCN(cfg, table).eval()
    cfg = MeanPoolMLPConfig(n_items=N_ITEMS, item_emb_dim=E, id_emb_dim=8, max_len=10, mlp_dims=(16, 8),
                            item_emb_norm=norm)
    return MeanPoolMLP(cfg, table).eval()


SCALES = [(0.01, 0.0), (30.0, 0.0), (0.01, 5.0), (30.0, -7.0), (2.0, "vector")]
CASES = [("SASRecDCN", "global"), ("SASRecDCN", "per_dim"), ("MeanPoolMLP", "global"), ("MeanPoolMLP", "per_dim")]


def _offset(b):
    return torch.linspace(-3.0, 4.0, E, dtype=torch.float64) if b == "vector" else b


@pytest.mark.parametrize("kind,norm", CASES)
@pytest.mark.parametrize("a,b", SCALES)
def test_logits_do_not_depend_on_the_tables_scale_and_offset(kind, norm, a, b):
    x = _table()
    batch = _batch()
    want = _build(kind, x.float(), norm)(*batch)
    got = _build(kind, _transformed(x, a, _offset(b)), norm)(*batch)
    # float32 rounding of a x + b (an offset 500 times the spread keeps about 4 of its 7 digits)
    assert torch.allclose(got, want, atol=2e-4, rtol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("kind", ["SASRecDCN", "MeanPoolMLP"])
def test_per_dim_also_ignores_each_dimensions_own_unit(kind):
    x = _table()
    batch = _batch()
    stretch = torch.logspace(-2, 1.5, E, dtype=torch.float64)  # each dimension in its own unit
    want = _build(kind, x.float(), "per_dim")(*batch)
    assert torch.allclose(_build(kind, _transformed(x, stretch, 0.0), "per_dim")(*batch), want, atol=2e-4)
    assert not torch.allclose(_build(kind, _transformed(x, stretch, 0.0), "global")(*batch),
                              _build(kind, x.float(), "global")(*batch), atol=1e-2)


@pytest.mark.parametrize("kind", ["SASRecDCN", "MeanPoolMLP"])
def test_without_the_normalisation_the_units_change_the_logits(kind):
    """The test above can fail: read raw, the same weights give other logits at another scale."""
    x = _table()
    batch = _batch()
    want = _build(kind, x.float(), "none")(*batch)
    for a, b in ((30.0, 0.0), (1.0, 5.0)):
        assert not torch.allclose(_build(kind, _transformed(x, a, b), "none")(*batch), want, atol=1e-2)


@pytest.mark.parametrize("kind", ["SASRecDCN", "MeanPoolMLP"])
def test_the_first_training_step_is_the_same_at_any_scale(kind):
    """Gradients too: the first training step's gradient of every trainable parameter is the same at any
    scale, up to float rounding (relative to that parameter's gradient norm; comparing the parameters after an
    Adam step instead would amplify the rounding of gradients near Adam's eps to steps of the learning rate)."""
    from task2.train import TrainConfig, make_optimizer, train_step

    x = _table()
    seq, item, likes, views = _batch()
    batch = {"item_seq": seq, "item_id": item, "likes_level": likes, "views_level": views,
             "label": (item % 3 == 0).float(), "global_size": len(item)}
    grads = []
    for table in (x.float(), _transformed(x, 30.0, -4.0)):
        model = _build(kind, table, "global").train()
        torch.manual_seed(3)  # the next-item loss draws its negatives from the global generator
        train_step(model, model, make_optimizer(model, TrainConfig(learning_rate=1e-2)), batch, grad_clip=1.0)
        grads.append({k: v.grad.detach().clone() for k, v in model.named_parameters() if v.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) >= 5
    for name, g in grads[0].items():
        assert float((grads[1][name] - g).norm()) <= 1e-4 * float(g.norm()) + 1e-9, name


def test_statistics_are_buffers_in_the_checkpoint_and_rebuild_exactly():
    x = _transformed(_table(), 30.0, 2.0)
    model = _build("SASRecDCN", x, "global")
    state = model.state_dict()
    assert {"items.emb_center", "items.emb_scale"} <= set(state)
    assert not {n for n, _ in model.named_parameters()} & {"items.emb_center", "items.emb_scale"}
    assert float(state["items.emb_scale"]) == pytest.approx(30.0 * float(
        (_table()[1:] - _table()[1:].mean(0)).pow(2).sum(1).mean().sqrt()), rel=1e-4)
    rebuilt = build_model(model_args(model))  # zeros and ones until the checkpoint fills them
    rebuilt.load_state_dict(state, strict=True)
    batch = _batch()
    assert torch.equal(rebuilt.eval()(*batch), model(*batch))


def test_padding_reads_as_zeros_and_a_constant_table_does_not_divide_by_zero():
    model = _build("MeanPoolMLP", torch.full((N_ITEMS, E), 3.0), "global")
    content = model.items.content(torch.tensor([0, 1, 5]))
    assert torch.equal(content, torch.zeros(3, E)) and torch.isfinite(model(*_batch())).all()


def test_din_keeps_fuxictrs_raw_input_path():
    """Track 1's fixed baseline reads item_emb_d128 through its own Linear, as FuxiCTR does: no statistics."""
    torch.manual_seed(0)
    tags = torch.zeros(N_ITEMS, 5, dtype=torch.long)
    din = DIN(DINConfig(n_items=N_ITEMS, item_emb_dim=E, n_tags=4, embedding_dim=4, max_len=10,
                        attention_units=(8,), dnn_units=(8,)), _table().float(), tags)
    assert not any(k.endswith(("emb_center", "emb_scale")) for k in din.state_dict())


def test_model_args_of_an_earlier_release_read_the_table_raw():
    """A run folder written before item_emb_norm existed still loads: its model read the table raw."""
    model = _build("SASRecDCN", _table().float(), "none")
    args = model_args(model)
    del args["config"]["item_emb_norm"]
    old = json.loads(json.dumps(args))
    assert upgrade_model_args(old)["config"]["item_emb_norm"] == "none"
    build_model(upgrade_model_args(old)).load_state_dict(model.state_dict(), strict=True)
    assert upgrade_model_args(model_args(_build("SASRecDCN", _table().float(), "global")))["config"][
        "item_emb_norm"] == "global"
    assert SASRecDCNConfig().item_emb_norm == "global" and MeanPoolMLPConfig().item_emb_norm == "global"
