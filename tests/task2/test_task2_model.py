"""Shapes and masks of every module of task2/model.py and task2/din.py, the config contract and checkpoint rebuilds."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.config import from_dict
from task2.din import DIN, DINAttention, DINConfig
from task2.layers import MLP, CrossNetV2, ItemEncoder
from task2.model import EncoderBlock, SASRecDCN, SASRecDCNConfig, SequenceEncoder
from task2.registry import build_model, model_args

N_ITEMS = 50
SMALL = dict(n_items=N_ITEMS, item_emb_dim=8, id_emb_dim=8, max_len=12, n_heads=4, ffn_dim=32,
             mlp_dims=(16, 8), dropout=0.0)


def _batch(b=6, l=12, seed=0, min_len=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS, (b, l), generator=g)
    lengths = torch.randint(min_len, l + 1, (b,), generator=g)
    seq[torch.arange(l)[None, :] < (l - lengths)[:, None]] = 0  # left padding
    item = torch.randint(1, N_ITEMS, (b,), generator=g)
    likes = torch.randint(1, 11, (b,), generator=g)
    views = torch.randint(1, 11, (b,), generator=g)
    return seq, item, likes, views


def _sasrec(**kw):
    torch.manual_seed(0)
    cfg = SASRecDCNConfig(**{**SMALL, **kw})
    return SASRecDCN(cfg, torch.randn(N_ITEMS, cfg.item_emb_dim)).eval()


def _din(**kw):
    torch.manual_seed(0)
    cfg = DINConfig(**{**dict(n_items=N_ITEMS, item_emb_dim=8, n_tags=20, embedding_dim=4, max_len=12,
                              attention_units=(16, 8), dnn_units=(16, 8)), **kw})
    tags = torch.randint(0, 20, (N_ITEMS, 5))
    tags[0] = 0
    return DIN(cfg, torch.randn(N_ITEMS, cfg.item_emb_dim), tags).eval()


# ---------------------------------------------------------------------------------------------
# Modules


def test_item_encoder_shape_and_frozen_buffer():
    table = torch.randn(N_ITEMS, 8)
    enc = ItemEncoder(N_ITEMS, 4, table)
    out = enc(torch.tensor([[0, 3], [7, 1]]))
    assert out.shape == (2, 2, 12)
    assert torch.equal(out[0, 0], torch.zeros(12) + torch.cat([torch.zeros(4), table[0]]))  # padding id row is 0
    assert torch.equal(out[1, 0, 4:], table[7])
    assert "item_emb_d128" in enc.state_dict() and "item_emb_d128" not in dict(enc.named_parameters())
    assert not enc.item_emb_d128.requires_grad
    out.sum().backward()
    assert enc.id_emb.weight.grad is not None and enc.item_emb_d128.grad is None


def test_encoder_block_ignores_masked_keys():
    torch.manual_seed(0)
    block = EncoderBlock(16, 4, 32, 0.0).eval()
    x = torch.randn(3, 7, 16)
    real = torch.ones(3, 7, dtype=torch.bool)
    real[:, :3] = False
    mask = real[:, None, None, :]  # (B, 1, 1, L): keys only
    y = block(x, mask)
    assert y.shape == (3, 7, 16)
    x2 = x.clone()
    x2[:, :3] = torch.randn(3, 3, 16) * 100  # change only the masked slots
    y2 = block(x2, mask)
    torch.testing.assert_close(y2[:, 3:], y[:, 3:], rtol=0, atol=1e-6)
    x3 = x.clone()
    x3[:, 5] += torch.randn(3, 16)  # change a real slot: other real outputs must move
    assert not torch.allclose(block(x3, mask)[:, 6], y[:, 6])


@pytest.mark.parametrize("pooling,causal", [("last", True), ("last", False), ("mean", True), ("mean", False)])
def test_sequence_encoder_padding_invariance_and_empty_rows(pooling, causal):
    cfg = SASRecDCNConfig(**{**SMALL, "pooling": pooling, "causal": causal})
    torch.manual_seed(0)
    enc = SequenceEncoder(cfg).eval()
    seq = torch.randn(4, 12, cfg.d_model)
    real = torch.zeros(4, 12, dtype=torch.bool)
    real[0, -1:] = True
    real[1, -5:] = True
    real[2, :] = True  # full row; row 3 has no real item
    user = enc(seq, real)
    assert user.shape == (4, cfg.d_model)
    assert torch.isfinite(user).all()
    assert torch.equal(user[3], torch.zeros(cfg.d_model))
    seq2 = seq.clone()
    seq2[~real] = torch.randn(int((~real).sum()), cfg.d_model) * 50  # perturb padded slots only
    torch.testing.assert_close(enc(seq2, real), user, rtol=0, atol=1e-5)
    # a mask with the wrong polarity would attend to padding: the perturbation would then show
    assert not torch.allclose(enc(seq2, ~real)[:2], enc(seq, ~real)[:2])
    # trimming leading padding columns keeps every position: same user vectors
    torch.testing.assert_close(enc(seq[:2, -5:], real[:2, -5:]), user[:2], rtol=0, atol=1e-5)


def test_sequence_encoder_causal_mask():
    cfg = SASRecDCNConfig(**SMALL)
    torch.manual_seed(0)
    enc = SequenceEncoder(cfg).eval()
    seq = torch.randn(2, 12, cfg.d_model)
    real = torch.ones(2, 12, dtype=torch.bool)
    real[:, :4] = False
    mask = enc.attention_mask(real)
    assert mask.shape == (2, 1, 12, 12)
    assert torch.equal(mask[0, 0, 6], torch.tensor([False] * 4 + [True] * 3 + [False] * 5))  # real keys <= 6
    assert torch.equal(mask[0, 0, 2], torch.eye(12, dtype=torch.bool)[2])  # padding query: itself only
    x = enc.encode(seq, real)
    seq2 = seq.clone()
    seq2[:, 9:] += torch.randn(2, 3, cfg.d_model)  # change items after slot 8
    x2 = enc.encode(seq2, real)
    torch.testing.assert_close(x2[:, 4:9], x[:, 4:9], rtol=0, atol=1e-6)  # states up to slot 8 unchanged
    assert not torch.allclose(x2[:, -1], x[:, -1])  # the last slot sees everything


def test_next_item_loss():
    model = _sasrec(aux_weight=0.5, aux_negatives=16, taste_components=0).train()  # the next-item loss alone
    seq, item, likes, views = _batch(min_len=2)
    logits, aux = model(seq, item, likes, views, with_aux=True)
    assert logits.shape == (6,) and aux.shape == () and aux.item() > 0
    aux.backward()
    assert model.items.id_emb.weight.grad.abs().sum() > 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = aux.item()
    for _ in range(30):  # the loss is learnable: a few steps on one batch bring it down
        opt.zero_grad()
        model(seq, item, likes, views, with_aux=True)[1].backward()
        opt.step()
    assert model(seq, item, likes, views, with_aux=True)[1].item() < 0.5 * first
    assert _sasrec(aux_weight=0.0, taste_components=0)(seq, item, likes, views, with_aux=True)[1] == 0  # no loss
    with pytest.raises(ValueError, match="causal"):
        SASRecDCNConfig(**{**SMALL, "aux_weight": 1.0, "causal": False}).check()


def test_taste_mixture_scores_the_target_by_the_bayes_posterior_predictive():
    model = _sasrec(taste_components=3, taste_pmi=False)  # round 2's score; the pmi form has its own test
    model.set_known_items(torch.arange(0, 30))  # items 1..29 known, 30.. never seen in training
    seq, item, likes, views = _batch()
    seq[0] = 0  # no history
    item[1] = 40  # an item never seen in training: read by its content alone
    real = seq > 0
    with torch.no_grad():
        score, loss = model.taste_score(seq, real, item)
        taste = model.taste
        content = model.items.content(torch.arange(N_ITEMS))  # (N, E)
        a = taste.STEP * (taste.id_logit.weight * model.id_known[:, None] + taste.content(content))  # (N, K)
        log_p = a - torch.logsumexp(a[1:30], dim=0)  # log P(j | k), normalised over the known items
        log_prior = torch.log_softmax(taste.STEP * taste.log_prior, 0)
        for r in range(1, len(item)):
            hist = seq[r][real[r]]
            post = torch.softmax(log_prior + log_p[hist].sum(0), 0)  # P(k | h)
            expected = torch.log((post * log_p[item[r]].exp()).sum()) + math.log(29)
            torch.testing.assert_close(score[r], expected, rtol=1e-5, atol=1e-5)
        assert score[0] == 0  # no history: nothing added
        log_h = torch.stack([torch.logsumexp(log_prior + log_p[seq[r][real[r]]].sum(0), 0) for r in range(len(item))])
        torch.testing.assert_close(loss, -log_h.sum() / real.sum())  # minus the histories' log-likelihood per item
    without = model(seq, item, likes, views)
    assert model.taste_scale == 0  # it starts out of the logit: the CTR loss decides how much it counts
    with torch.no_grad():
        model.taste_scale.fill_(2.0)
    torch.testing.assert_close(model(seq, item, likes, views) - without, 2.0 * score, rtol=1e-5, atol=1e-5)
    model.train()  # the CTR loss weighs the score but does not refit the mixture: only its likelihood does
    model.zero_grad()
    model(seq, item, likes, views).sum().backward()
    assert model.taste_scale.grad != 0 and model.taste.id_logit.weight.grad is None
    model.taste_score(seq, real, item)[1].backward()
    assert model.taste.id_logit.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="taste"):
        SASRecDCNConfig(**{**SMALL, "taste_components": -1}).check()


def test_taste_prior_adds_the_gaussian_log_prior_of_the_own_logits_per_training_history_item():
    seq, item, _, _ = _batch()
    flat, prior = _sasrec(taste_components=3), _sasrec(taste_components=3, taste_prior_std=0.5)
    for m in (flat, prior):
        m.set_known_items(item, seq)  # the training split: these rows' targets and histories
    assert prior.taste_tokens == int((seq > 0).sum())
    with torch.no_grad():
        s0, l0 = flat.taste_score(seq, seq > 0, item)
        s1, l1 = prior.taste_score(seq, seq > 0, item)
    a = prior.taste.STEP * prior.taste.id_logit.weight[prior.id_known]
    torch.testing.assert_close(l1 - l0, (a ** 2).sum() / (2 * 0.25 * prior.taste_tokens))
    assert torch.equal(s0, s1)  # the prior changes the fit, not the score of given parameters
    with pytest.raises(ValueError, match="taste_prior_std"):
        SASRecDCNConfig(**{**SMALL, "taste_prior_std": -1.0}).check()


def test_taste_pmi_scores_what_the_history_adds_to_the_targets_own_frequency():
    model = _sasrec(taste_components=3)  # taste_pmi is the default
    assert model.cfg.taste_pmi
    model.set_known_items(torch.arange(0, 30))
    seq, item, _, _ = _batch()
    seq[0] = 0  # no history: nothing added
    real = seq > 0
    with torch.no_grad():
        score, _ = model.taste_score(seq, real, item)
        taste = model.taste
        a = taste.STEP * (taste.id_logit.weight * model.id_known[:, None]
                          + taste.content(model.items.content(torch.arange(N_ITEMS))))  # (N, K)
        log_p = a - torch.logsumexp(a[1:30], dim=0)  # log P(j | k)
        log_prior = torch.log_softmax(taste.STEP * taste.log_prior, 0)
        for r in range(1, len(item)):
            post = torch.softmax(log_prior + log_p[seq[r][real[r]]].sum(0), 0)  # P(k | h)
            marginal = (log_prior.exp() * log_p[item[r]].exp()).sum()  # P(j) = sum_k pi_k P(j | k)
            expected = torch.log((post * log_p[item[r]].exp()).sum()) - torch.log(marginal)
            torch.testing.assert_close(score[r], expected, rtol=1e-5, atol=1e-5)
    assert score[0] == 0
    plain = _sasrec(taste_components=3, taste_pmi=False)  # the same weights, round 2's score: log P(j | h) + log 29
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain.taste_score(seq, real, item)[0][1:], score[1:])


def test_taste_clicks_fit_the_mixture_on_history_and_click_and_never_reach_the_logits():
    model = _sasrec(taste_components=3, taste_clicks=True).train()  # an option, off by default
    model.set_known_items(torch.arange(0, 30))
    seq, item, likes, views = _batch()
    seq[0] = 0  # a click without history is one draw from the prior's mixture
    item[1] = 40  # a clicked item never seen in training: its content alone
    real = seq > 0
    clicks = (torch.arange(len(item)) % 2 == 0).float()
    clicks[1] = 1.0
    with torch.no_grad():
        _, loss = model.taste_score(seq, real, item, clicks)
        taste = model.taste
        content = model.items.content(torch.arange(N_ITEMS))
        a = taste.STEP * (taste.id_logit.weight * model.id_known[:, None] + taste.content(content))  # (N, K)
        log_p = a - torch.logsumexp(a[1:30], dim=0)
        log_prior = torch.log_softmax(taste.STEP * taste.log_prior, 0)
        joint = []
        for r in range(len(item)):  # log P(h) on every row, log P(h, j) on the clicked ones
            draws = torch.cat([seq[r][real[r]], item[r:r + 1]]) if clicks[r] else seq[r][real[r]]
            joint.append(torch.logsumexp(log_prior + log_p[draws].sum(0), 0))
        torch.testing.assert_close(loss, -torch.stack(joint).sum() / (real.sum() + clicks.sum()),
                                   rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    with_clicks = model(seq, item, likes, views, with_aux=True, clicks=clicks)
    torch.manual_seed(0)
    flipped = model(seq, item, likes, views, with_aux=True, clicks=1 - clicks)
    torch.testing.assert_close(with_clicks[0], flipped[0], rtol=0, atol=0)  # the logits never read the labels
    assert with_clicks[1] != flipped[1]  # the likelihood does
    model.eval()
    torch.testing.assert_close(model(seq, item, likes, views), model(seq, item, likes, views, clicks=clicks),
                               rtol=0, atol=0)


def test_taste_mixture_learns_which_items_go_together_from_histories_alone():
    # two tastes: users draw their histories from items 1..10 or from 11..20. Fitted on the histories
    # (the training loss with its CTR part left out), the mixture ranks a target of the history's own group
    # above one of the other group
    g = torch.Generator().manual_seed(0)
    group = torch.randint(0, 2, (64,), generator=g)
    seq = 1 + 10 * group[:, None] + torch.randint(0, 10, (64, 8), generator=g)
    model = _sasrec(taste_components=2, aux_weight=0.0).train()
    model.set_known_items(seq)
    opt = torch.optim.Adam(model.taste.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        model.taste_score(seq, seq > 0, seq[:, 0])[1].backward()
        opt.step()
    same, other = 1 + 10 * group + 3, 1 + 10 * (1 - group) + 3
    with torch.no_grad():
        s_same = model.taste_score(seq, seq > 0, same)[0]
        s_other = model.taste_score(seq, seq > 0, other)[0]
    assert (s_same > s_other + 1.0).all()


def test_cold_start_items_absent_from_training_share_the_unknown_id_vector():
    model = _sasrec(cold_start=True)
    model.set_known_items(torch.tensor([3]), torch.tensor([[0, 5], [5, 7]], dtype=torch.int32))  # targets, histories
    assert model.id_known.nonzero().flatten().tolist() == [0, 3, 5, 7]  # padding 0 counts as known
    with torch.no_grad():
        model.unknown_id.fill_(0.5)
    v = model.encode_items(torch.tensor([0, 5, 40]))
    assert torch.equal(v[0, :8], torch.zeros(8))  # padding keeps its zero id row
    assert torch.equal(v[1], model.items(torch.tensor(5)))  # a known item: its own id row
    assert torch.equal(v[2, :8], torch.full((8,), 0.5))  # an unknown item: the shared id vector ...
    assert torch.equal(v[2, 8:], model.items.content(torch.tensor(40)))  # ... and its own content row
    with torch.no_grad():  # so an unknown item's (untrained) id row no longer reaches the logit
        model.items.id_emb.weight[40].normal_()
    assert torch.equal(model.encode_items(torch.tensor([40])), v[2:])
    plain = _sasrec(cold_start=False)  # cold_start off: every item keeps its id row
    plain.set_known_items(torch.tensor([3]))
    assert plain.id_known.all()


def test_id_dropout_is_random_in_training_only():
    model = _sasrec(cold_start=True, id_dropout=0.5)  # SMALL has no other dropout
    seq, item, likes, views = _batch()
    with torch.no_grad():
        model.unknown_id.fill_(3.0)
    assert torch.equal(model(seq, item, likes, views), model(seq, item, likes, views))  # eval: deterministic
    model.train()
    torch.manual_seed(1)
    a = model(seq, item, likes, views)
    torch.manual_seed(2)
    b = model(seq, item, likes, views)
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="id_dropout"):
        SASRecDCNConfig(**{**SMALL, "id_dropout": 1.0}).check()


def test_next_item_loss_never_uses_items_absent_from_training_as_negatives():
    # pushing never-seen items down as negatives would teach the model they are unlikely, which is how
    # the demo's cold items lost 0.005 valid AUC
    model = _sasrec(cold_start=True, aux_weight=1.0, aux_negatives=64, taste_components=0).train()
    seq, item, likes, views = _batch(min_len=2)
    seq = torch.where(seq > 0, 1 + seq % 29, seq)  # histories use items 1..29 only
    model.set_known_items(seq)
    torch.manual_seed(0)
    first = model(seq, item, likes, views, with_aux=True)[1]
    with torch.no_grad():
        model.unknown_id.normal_()
        model.items.item_emb_d128[30:] = torch.randn(N_ITEMS - 30, 8)
    torch.manual_seed(0)
    assert torch.equal(model(seq, item, likes, views, with_aux=True)[1], first)


def test_sequence_encoder_gradients_finite_for_empty_rows():
    cfg = SASRecDCNConfig(**SMALL)
    enc = SequenceEncoder(cfg).train()
    seq = torch.randn(2, 12, cfg.d_model, requires_grad=True)
    real = torch.zeros(2, 12, dtype=torch.bool)
    real[0, -3:] = True
    enc(seq, real).sum().backward()
    assert torch.isfinite(seq.grad).all()
    assert torch.equal(seq.grad[0, :9], torch.zeros(9, cfg.d_model))  # no gradient into padded slots


def test_crossnet_v2_formula():
    torch.manual_seed(0)
    net = CrossNetV2(6, 2)
    x0 = torch.randn(3, 6)
    x1 = x0 * net.layers[0](x0) + x0
    x2 = x0 * net.layers[1](x1) + x1
    torch.testing.assert_close(net(x0), x2)
    assert net(x0).shape == (3, 6)


def test_mlp_shapes_and_layers():
    mlp = MLP(10, (8, 4), dropout=0.1, batch_norm=True)
    kinds = [type(m).__name__ for m in mlp.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert mlp(torch.randn(5, 10)).shape == (5, 4)
    assert [type(m).__name__ for m in MLP(10, (8,)).net] == ["Linear", "ReLU"]


def test_din_attention_masks_padding():
    torch.manual_seed(0)
    att = DINAttention(6, (8, 4), 0.0).eval()
    t, h = torch.randn(2, 6), torch.randn(2, 5, 6)
    real = torch.tensor([[False, False, True, True, True], [False] * 5])
    out = att(t, h, real)
    assert out.shape == (2, 6)
    assert torch.equal(out[1], torch.zeros(6))
    h2 = h.clone()
    h2[0, :2] = 99.0
    torch.testing.assert_close(att(t, h2, real), out)


def test_din_packed_attention_equals_the_padded_form_values_and_gradients():
    """DIN scores only the real (row, slot) pairs; FuxiCTR scores all 64 slots and zeroes the padded
    ones. Mixed history lengths (0 to 12 of 12), batch norm in training mode, no dropout: the logits
    and every parameter's gradient agree to float tolerance."""
    model = _din(attention_dropout=0.0, net_dropout=0.0).train()
    seq, item, likes, views = _batch(b=32, min_len=0, seed=3)
    assert (seq > 0).sum(1).min() == 0 and (seq > 0).sum(1).max() == 12
    grads = []
    for packed in (True, False):
        model.zero_grad(set_to_none=True)
        logits = model(seq, item, likes, views, packed=packed)
        (logits * torch.linspace(-1, 1, len(logits))).sum().backward()
        grads.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = grads
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert ga.keys() == gb.keys() and len(ga) > 10
    scale = max(g.abs().max() for g in gb.values())
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=0, atol=1e-5 * scale, msg=name)
    # and in evaluation (running batch-norm statistics)
    model.eval()
    torch.testing.assert_close(model(seq, item, likes, views), model(seq, item, likes, views, packed=False))


# ---------------------------------------------------------------------------------------------
# Models


def test_sasrecdcn_shapes_and_masks():
    model = _sasrec()
    seq, item, likes, views = _batch()
    out = model(seq, item, likes, views)
    assert out.shape == (6,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # item ids older than max_len are never read
    longer = torch.cat([torch.randint(1, N_ITEMS, (6, 5)), seq], dim=1)
    torch.testing.assert_close(model(longer, item, likes, views), out, rtol=0, atol=0)
    # length-aware trimming: cut the leading all-padding columns
    keep = int((seq > 0).sum(1).max())
    torch.testing.assert_close(model(seq[:, -keep:], item, likes, views), out, rtol=0, atol=1e-5)
    # zeroing the histories must change the output (the history is used)
    assert (model(torch.zeros_like(seq), item, likes, views) - out).abs().max() > 1e-4
    # so must the target item and the levels
    assert (model(seq, (item % (N_ITEMS - 1)) + 1, likes, views) - out).abs().max() > 1e-4
    assert (model(seq, item, 11 - likes, views) - out).abs().max() > 1e-4


def test_din_shapes_masks_and_regularizer():
    model = _din()
    seq, item, likes, views = _batch()
    out = model(seq, item, likes, views)
    assert out.shape == (6,) and torch.isfinite(out).all()
    keep = int((seq > 0).sum(1).max())
    torch.testing.assert_close(model(seq[:, -keep:], item, likes, views), out, rtol=0, atol=1e-5)
    assert (model(torch.zeros_like(seq), item, likes, views) - out).abs().max() > 1e-6
    assert model.encode_items(item).shape == (6, model.cfg.item_dim)
    assert _din(embedding_regularizer=0.0).regularization_loss() == 0.0


def test_din_regularizer_covers_the_parameters_fuxictr_covers():
    """FuxiCTR 2.3.7 puts embedding_regularizer on every trainable parameter of its feature embedding (the id,
    tag and level tables and item_emb_d128's Linear projection) and net_regularizer on all the others."""
    emb_names = ("items.id_emb.weight", "tag_emb.weight", "emb_proj.weight", "likes.weight", "views.weight")
    model = _din(embedding_regularizer=1e-2, net_regularizer=1e-3)
    params = dict(model.named_parameters())
    sq = {k: p.detach().double().pow(2).sum() for k, p in params.items()}
    expected = 0.5e-2 * sum(sq[k] for k in emb_names) + 0.5e-3 * sum(v for k, v in sq.items() if k not in emb_names)
    torch.testing.assert_close(model.regularization_loss().double(), expected, rtol=1e-5, atol=0)
    only_emb = _din(embedding_regularizer=1e-2).regularization_loss().double()
    torch.testing.assert_close(only_emb, 0.5e-2 * sum(sq[k] for k in emb_names), rtol=1e-5, atol=0)
    assert model.likes.padding_idx == 0 and model.views.padding_idx == 0  # FuxiCTR pads level 0


def test_din_default_config_is_the_official_baseline():
    cfg = DINConfig()
    assert (cfg.embedding_dim, cfg.attention_units, cfg.dnn_units, cfg.max_len) == (64, (512, 256), (1024, 512, 256), 64)
    assert cfg.item_dim == 256 and cfg.batch_norm and cfg.attention_dropout == 0.1


def test_reference_architecture_defaults():
    """The defaults chosen on valid AUC across the four worlds (bench/task2_worlds_final.json)."""
    cfg = SASRecDCNConfig()
    assert (cfg.id_emb_dim, cfg.item_emb_dim, cfg.item_dim, cfg.seq_dim, cfg.d_model) == (32, 128, 160, 64, 64)
    assert (cfg.n_layers, cfg.n_heads, cfg.ffn_dim, cfg.level_dim, cfg.cross_layers) == (2, 2, 256, 16, 1)
    assert cfg.mlp_dims == (64,)
    assert cfg.mean_readout and cfg.product and cfg.item_bias and cfg.bilinear_dim == 64
    assert not cfg.target_attention and cfg.history_id_dropout == 0.0
    model = SASRecDCN(dataclasses.replace(cfg, n_items=10))
    # [last, mean] readouts and their products with the target (4 x 64), target 160, levels 2 x 16, u 64
    assert cfg.head_dim == 4 * 64 + 160 + 2 * 16 + 64
    assert model.head.in_features == cfg.head_dim + 64


@pytest.mark.parametrize("make", [_sasrec, _din])
def test_build_model_roundtrip_strict(make):
    model = make()
    args = model_args(model)
    rebuilt = build_model(args)
    buffers = dict(rebuilt.named_buffers())
    assert torch.count_nonzero(buffers["items.item_emb_d128"]) == 0  # zeros until loaded
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.eval()
    seq, item, likes, views = _batch()
    torch.testing.assert_close(rebuilt(seq, item, likes, views), model(seq, item, likes, views), rtol=0, atol=0)
    assert "items.item_emb_d128" in model.state_dict()


def test_config_from_dict_errors():
    with pytest.raises(ValueError, match="unknown key `n_layer`; known keys: "):
        from_dict(SASRecDCNConfig, {"n_layer": 2})
    with pytest.raises(ValueError, match="`n_layers` must be an integer, got 2.5"):
        from_dict(SASRecDCNConfig, {"n_layers": 2.5})
    with pytest.raises(ValueError, match="`mlp_dims` must be a list, got 64"):
        from_dict(SASRecDCNConfig, {"mlp_dims": 64})
    with pytest.raises(ValueError, match="divisible"):
        from_dict(SASRecDCNConfig, {"n_heads": 5})
    with pytest.raises(ValueError, match="pooling"):
        from_dict(SASRecDCNConfig, {"pooling": "max"})
    assert from_dict(SASRecDCNConfig, {"mlp_dims": [8, 4], "dropout": 0}).mlp_dims == (8, 4)
    with pytest.raises(ValueError, match="unknown model_class"):
        build_model({"model_class": "Wide", "config": {}})


@pytest.mark.parametrize("make", [_sasrec, _din])
def test_no_tensor_is_named_like_a_user_embedding(make):
    """T2-FEATURES refuses a checkpoint with a tensor named like a user embedding; the defaults pass it."""
    from referee.rules.model_rules import USER_TENSOR

    names = list(make().state_dict())
    assert names and not [n for n in names if USER_TENSOR.search(n)]


def test_history_id_dropout_one_reads_history_items_by_content_only():
    """history_id_dropout 1: every history item takes the shared unknown id vector, in training and in
    prediction, so changing the id rows of the history's items changes nothing; at 0 it does."""
    for p, same in ((1.0, True), (0.0, False)):
        model = _sasrec(history_id_dropout=p, aux_weight=0.0)
        seq = torch.tensor([[0, 0, 3, 5, 7], [0, 2, 4, 6, 8]])
        args = (seq, torch.tensor([1, 9]), torch.tensor([2, 3]), torch.tensor([4, 5]))
        before = model(*args)
        with torch.no_grad():
            model.items.id_emb.weight[[2, 3, 4, 5, 6, 7, 8]] += 1.0
        assert torch.equal(model(*args), before) == same, p
        mask = model.unknown_mask(seq, p)
        assert torch.equal(mask, seq > 0) if same else not mask.any()


def test_bilinear_ids_lets_the_match_read_the_id_vectors_only_when_asked():
    seq, item, _, _ = _batch()
    real = seq > 0
    for with_ids in (False, True):
        m = _sasrec(bilinear_ids=with_ids, taste_components=0)
        width = m.cfg.item_dim if with_ids else m.cfg.item_emb_dim
        assert m.bil_history.in_features == m.bil_item.in_features == width

        def match():
            if not with_ids:
                return m.content_match(seq, real, item)[1]
            return m.content_match(seq, real, item, m.encode_items(seq), m.encode_items(item))[1]

        before = match()
        with torch.no_grad():
            m.items.id_emb.weight[item[0]] += 1.0  # the first row's target: its id vector, not its content
        after = match()
        assert (after[0] != before[0]) == with_ids
