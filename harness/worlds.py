"""The latent worlds behind `harness synth`: how items, users and clicks are drawn, and the exact oracle.

Every world shares the items and the users; they differ in what a click depends on.

Items have three hidden factors and a popularity. `category` shows in the cover (a shape) and the title
(a word), `colour` only in the cover, `topic` only in the title. Popularity is long-tailed (Zipf), and a
small share of items is *cold* (new): never in train rows or histories, only in valid and test, and
drawn from the less popular half of the items (from all items in the `history` world). An item's
*base logit* is `gamma * log_pop + appeal * a(item)`, where `a` is a global content appeal (every user
likes some categories, colours and topics more than others) that covers and titles reveal.

Users belong to one of S taste segments (prior pi). A segment's taste for an item is
`beta * (A_cat[s, cat] + A_col[s, col] + A_top[s, top]) + idiosyncrasy * e[s, j]`, where e ~ N(0, 1) is a
taste for the item itself that neither cover nor title shows (only its id and its clicks can), and a
history is L i.i.d. draws from
P(j | s) proportional to exp(base_j + taste_s(j)) over warm items (L: min 3, median about 6, up to 100).

The clicked item of a row is drawn in one of two ways (`WorldConfig.target`):

- `segment`: from the same P(j | s). The history only tells which segment the user is in, so the exact
  posterior is P(s | h) proportional to pi_s * prod_t P(h_t | s), and P(j | h) = sum_s P(s | h) P(j | s).
- `history`: from P(j | h) proportional to exp(base_j + history_beta * <theta(h), z_j>), where z_j is the
  one-hot of the item's three factors and theta(h) the weighted mean of the history items' z, the item
  k steps back weighted `recency ** k` (1: a plain mean, order-free; below 1: the recent items count
  most). P(j | h) is a function of the observed history, so it is exact as it stands.

Each user in a split contributes one clicked item and three negatives drawn uniformly from the split's
item pool (25 % positives; `SynthConfig.negatives` sets how many). For a row (h, j) of a group of g rows, the Bayes posterior is then
P(label = 1 | h, j) = (P(j | h) / g) / (P(j | h) / g + (1 - 1 / g) / pool), the best any model can do
from the row's features. The history-blind oracle replaces P(j | h) by the marginal P(j): exact
(sum_s pi_s P(j | s)) in `segment` worlds, and in `history` worlds the mean of P(j | h) over every
generated user's history (a Monte Carlo estimate over 41,000 users at demo scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from core.challenge import HISTORY_LEN



@dataclass(frozen=True)
class SynthConfig:
    """Sizes and the item/segment layout. `full` has the real MicroLens-1M sizes."""

    n_items: int
    n_users: int
    n_train: int
    n_valid: int
    n_test: int
    n_tags: int
    image_size: int = 64
    n_segments: int = 16
    n_categories: int = 8
    n_colours: int = 8
    n_topics: int = 8
    zipf: float = 0.9  # popularity long tail: pop_j ~ 1 / (rank_j + 10) ** zipf
    cold_share: float = 0.04  # items never seen in train rows or histories
    text_dim: int = 768
    image_dim: int = 1024
    # The fields below describe what the real data could differ in; their defaults are the named scales'
    # (and MicroLens-1M's) shape, and `sample_world_params` draws them for the sampled worlds.
    negatives: int = 3  # uniform negatives per clicked item (a user's group has negatives + 1 rows)
    hist_min: int = 3  # history length: hist_min + floor(lognormal(hist_mu, hist_sigma)), at most hist_max
    hist_mu: float = 1.2
    hist_sigma: float = 0.85
    hist_max: int = 100
    tag_factor_share: float = 0.6  # chance that an item's tags name its category (and, apart, its topic)
    max_other_tags: int = 3  # 0..max_other_tags further tags drawn uniformly from the vocabulary
    emb_noise: float = 1.5  # noise of the provided text/image embeddings around what each modality shows
    # item_emb_d128 as written = (PCA rows, rotated when emb_rotate, times per-dimension factors
    # exp(emb_anisotropy * N(0, 1))) * emb_scale + emb_scale * emb_offset * N(1, 0.5) per dimension;
    # row 0 stays all zeros. The defaults leave the PCA rows as they are (mean row norm about 1).
    emb_scale: float = 1.0
    emb_offset: float = 0.0
    emb_anisotropy: float = 0.0
    emb_rotate: bool = False

    @property
    def group_size(self) -> int:
        """Rows per user in a split: one click and `negatives` negatives."""
        return self.negatives + 1

    @property
    def emb_nuisance(self) -> bool:
        """Whether item_emb_d128 is transformed after the PCA (scale, offset, anisotropy, rotation)."""
        return (self.emb_scale, self.emb_offset, self.emb_anisotropy, self.emb_rotate) != (1.0, 0.0, 0.0, False)


SCALES = {
    "tiny": SynthConfig(n_items=400, n_users=5_200, n_train=16_000, n_valid=2_000, n_test=2_000,
                        n_tags=120),
    "demo": SynthConfig(n_items=3_000, n_users=41_000, n_train=120_000, n_valid=10_000, n_test=30_000,
                        n_tags=1_200),
    "full": SynthConfig(n_items=91_717, n_users=1_000_000, n_train=3_600_000, n_valid=10_000,
                        n_test=379_142, n_tags=11_740),
}


@dataclass(frozen=True)
class WorldConfig:
    """What a click depends on (see the module docstring)."""

    name: str
    summary: str
    target: str = "segment"  # "segment" (hidden segment) or "history" (the observed history's taste)
    beta: float = 1.6  # strength of a segment's taste (histories; and targets in segment worlds)
    gamma: float = 0.7  # popularity exponent
    appeal: float = 0.0  # strength of the global content appeal
    history_beta: float = 0.0  # history worlds: strength of the taste read from the history
    recency: float = 1.0  # history worlds: weight recency ** k for the item k steps back
    cold_from_tail: bool = True  # cold items are drawn from the less popular half (new items), not from all
    idiosyncrasy: float = 0.0  # strength of a segment's taste for the item itself, beyond its content


WORLDS = {
    "item": WorldConfig(
        "item", "item-driven, like the real data: popularity, levels and content carry most of the signal; "
                "the history adds a few points",
        target="segment", beta=1.0, gamma=1.5, appeal=0.8, idiosyncrasy=0.5),
    "history": WorldConfig(
        "history", "history-driven: 16 hidden taste segments, recognised from the history, decide the click",
        target="segment", beta=1.6, gamma=0.7, appeal=0.0, cold_from_tail=False),
    "mean": WorldConfig(
        "mean", "taste is the plain average of the history's items (order-free), on top of popularity",
        target="history", beta=1.6, gamma=1.0, appeal=0.4, history_beta=4.0, recency=1.0),
    "recent": WorldConfig(
        "recent", "taste follows the most recent items (weight 0.5 ** k for the item k steps back)",
        target="history", beta=1.6, gamma=1.0, appeal=0.4, history_beta=4.0, recency=0.5),
}
DEFAULT_WORLD = "item"
RANDOM_WORLD = "random"  # `harness synth --world random`: every nuisance factor drawn (sample_world_params)


# ---------------------------------------------------------------------------------------------
# Sampled worlds: a family no one can tune to


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_world_params(world_seed: int, n_train: int | None = None) -> dict:
    """Draw a world: every factor the real data (or a stranger's stand-in) could differ in.

    Returns {"synth": SynthConfig fields, "world": WorldConfig fields}, plain JSON, which
    `world_from_params` turns back into configs (and `harness synth --world-params FILE` reads, a partial
    file overriding the draw). The ranges:

    - size: 15k to 1M training rows (log-uniform); 8 to 100 training rows per item (so 200 to 91,717
      items); 2k to 10k validation and 2k to 20k test rows; 1 to 5 negatives per click (3 twice as often);
    - histories: length hist_min (1-5) + floor(lognormal(mu 0.4-2.2, sigma 0.4-1.1)), at most 100;
    - tags: a vocabulary of 60 to 12,000; category and topic tags present with chance 0.2-0.9; 0 to 0-6
      further random tags;
    - items: 3 to 8 levels per hidden factor (category, colour, topic: what covers and titles can show),
      Zipf popularity 0.5-1.3, 0-12 % cold items (from the less popular half with chance 0.7);
    - clicks: hidden segments (2-32) or the observed history's taste (recency 0.3-1, or a plain mean);
      taste strength beta 0.4-2, popularity weight gamma 0.2-1.8, global content appeal 0-1.2, a
      segment's taste for the item itself 0-1, the history's weight 1-5;
    - item_emb_d128: the modalities' noise 0.5-5 (how much signal it carries), scale 0.01-30, an offset
      of up to 10 scales per dimension, per-dimension factors exp(0-1.5 x N(0, 1)), rotated or not.

    `n_train` fixes the size instead of drawing it (items and users follow it; every other factor is the
    same draw): a size ladder chosen in advance, with everything else left to the seed.
    """
    r = np.random.default_rng([20_251_206, int(world_seed)])
    drawn = int(round(_log_uniform(r, 15_000, 1_000_000), -2))
    n_train = drawn if n_train is None else int(n_train)
    negatives = int(r.choice([1, 2, 3, 3, 4, 5]))
    n_items = int(min(91_717, max(200, n_train / _log_uniform(r, 8, 100))))
    n_valid = int(round(_log_uniform(r, 2_000, 10_000), -2))
    n_test = int(round(_log_uniform(r, 2_000, 20_000), -2))
    users = users_needed(negatives, n_train, n_valid, n_test)
    n_categories, n_colours, n_topics = (int(x) for x in r.integers(3, 9, 3))
    n_tags = int(max(1 + n_categories + n_topics + 20, _log_uniform(r, 60, 12_000)))
    target = str(r.choice(["segment", "history"]))
    synth = {
        "n_items": n_items, "n_users": int(users * r.uniform(1.0, 1.15)) + 1, "n_train": n_train,
        "n_valid": n_valid, "n_test": n_test, "n_tags": n_tags,
        "n_segments": int(r.choice([2, 4, 8, 16, 32])), "n_categories": n_categories, "n_colours": n_colours,
        "n_topics": n_topics, "zipf": round(r.uniform(0.5, 1.3), 3), "cold_share": round(r.uniform(0.0, 0.12), 3),
        "negatives": negatives, "hist_min": int(r.integers(1, 6)), "hist_mu": round(r.uniform(0.4, 2.2), 3),
        "hist_sigma": round(r.uniform(0.4, 1.1), 3), "hist_max": 100,
        "tag_factor_share": round(r.uniform(0.2, 0.9), 3), "max_other_tags": int(r.integers(0, 7)),
        "emb_noise": round(_log_uniform(r, 0.5, 5.0), 3), "emb_scale": float(f"{_log_uniform(r, 0.01, 30):.4g}"),
        "emb_offset": round(r.uniform(-10, 10), 3), "emb_anisotropy": round(r.uniform(0.0, 1.5), 3),
        "emb_rotate": bool(r.random() < 0.5),
    }
    world = {
        "name": f"random-{int(world_seed)}", "summary": f"a sampled world (world seed {int(world_seed)})",
        "target": target, "beta": round(r.uniform(0.4, 2.0), 3), "gamma": round(r.uniform(0.2, 1.8), 3),
        "appeal": round(r.uniform(0.0, 1.2), 3),
        "history_beta": round(r.uniform(1.0, 5.0), 3) if target == "history" else 0.0,
        "recency": (1.0 if r.random() < 0.3 else round(r.uniform(0.3, 0.95), 3)) if target == "history" else 1.0,
        "cold_from_tail": bool(r.random() < 0.7),
        "idiosyncrasy": round(r.uniform(0.0, 1.0), 3) if target == "segment" else 0.0,
    }
    return {"synth": synth, "world": world}


def users_needed(negatives: int, *row_counts: int) -> int:
    """Users that row counts take: each user gives one group of negatives + 1 rows to one split (a last
    partial group still takes a user)."""
    return sum(math.ceil(n / (negatives + 1)) for n in row_counts)


def world_from_params(params: dict, base: tuple[SynthConfig, WorldConfig] | None = None) -> tuple[SynthConfig, WorldConfig]:
    """{"synth": {...}, "world": {...}} (sample_world_params, or a file of that shape, possibly partial)
    applied over `base` (default: the demo scale and the default world) -> configs.

    Raises ValueError, one line naming the key, on an unknown key, a wrong type or a value the generator
    cannot use; the command line adds the file."""
    from core.config import from_dict

    if not isinstance(params, dict) or set(params) - {"synth", "world"}:
        raise ValueError('world parameters must be an object {"synth": {...}, "world": {...}}')
    base_cfg, base_world = base or (SCALES["demo"], WORLDS[DEFAULT_WORLD])
    out = [from_dict(SynthConfig, params.get("synth", {}), base_cfg, "synth."),
           from_dict(WorldConfig, params.get("world", {}), base_world, "world.")]
    cfg, wcfg = out
    problems = []
    if min(cfg.n_items, cfg.n_train, cfg.n_valid, cfg.n_test, cfg.n_segments) < 1 or cfg.n_items < 2:
        problems.append("n_items >= 2 and positive row, user and segment counts are required")
    if not all(1 <= k <= 8 for k in (cfg.n_categories, cfg.n_colours, cfg.n_topics)):
        problems.append("n_categories, n_colours and n_topics must be 1 to 8 (the shapes, colours and words covers "
                        "and titles can show)")
    if cfg.negatives < 1:
        problems.append("negatives must be >= 1")
    if not 1 <= cfg.hist_min <= cfg.hist_max:
        problems.append("1 <= hist_min <= hist_max is required")
    if cfg.n_tags < 1 + cfg.n_categories + cfg.n_topics:
        problems.append(f"n_tags must be at least 1 + n_categories + n_topics = {1 + cfg.n_categories + cfg.n_topics}")
    if not 0 <= cfg.cold_share < 0.5:
        problems.append("cold_share must be in [0, 0.5)")
    if cfg.emb_scale <= 0 or cfg.emb_noise <= 0:
        problems.append("emb_scale and emb_noise must be > 0")
    if wcfg.target not in ("segment", "history"):
        problems.append(f"world.target must be 'segment' or 'history', got {wcfg.target!r}")
    if users_needed(cfg.negatives, cfg.n_train, cfg.n_valid, cfg.n_test) > cfg.n_users:
        problems.append("n_users is too small for the row counts (each user gives negatives + 1 rows to one split)")
    if problems:
        raise ValueError("; ".join(problems))
    return cfg, wcfg


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


@dataclass
class World:
    """Hidden factors, tastes and the item distributions of one world."""

    cfg: SynthConfig
    wcfg: WorldConfig
    category: np.ndarray  # (N,) int, index 0 is item 1
    colour: np.ndarray  # (N,)
    topic: np.ndarray  # (N,)
    log_pop: np.ndarray  # (N,)
    cold: np.ndarray  # (N,) bool
    prior: np.ndarray  # (S,)
    base: np.ndarray  # (N,) gamma * log_pop + appeal * a(item): the item's logit before any taste
    log_p_all: np.ndarray  # (S, N) log P(j | s) over all items (segment targets in valid/test)
    log_p_warm: np.ndarray  # (S, N) log P(j | s) over warm items, -inf on cold ones (histories, train)

    @property
    def group(self) -> np.ndarray:
        """(N,) the item's factor triple as one index in 0..G-1 (G = categories x colours x topics)."""
        c = self.cfg
        return (self.category * c.n_colours + self.colour) * c.n_topics + self.topic

    @property
    def n_groups(self) -> int:
        return self.cfg.n_categories * self.cfg.n_colours * self.cfg.n_topics

    def level_score(self) -> np.ndarray:
        """What likes_level and views_level are noisy deciles of: the base logit on log_pop's scale."""
        return self.base / self.wcfg.gamma


def make_world(cfg: SynthConfig, wcfg: WorldConfig, rng: np.random.Generator,
               appeal_rng: np.random.Generator) -> World:
    """Draw the factors (rng, in the order the history world has always used) and the appeal (appeal_rng)."""
    if wcfg.target not in ("segment", "history"):
        raise ValueError(f"unknown target {wcfg.target!r}")
    n, s = cfg.n_items, cfg.n_segments
    category = rng.integers(0, cfg.n_categories, n)
    colour = rng.integers(0, cfg.n_colours, n)
    topic = rng.integers(0, cfg.n_topics, n)
    rank = rng.permutation(n)
    log_pop = -cfg.zipf * np.log(rank + 10.0)
    cold = np.zeros(n, dtype=bool)
    n_cold = int(round(cfg.cold_share * n))
    pool = np.nonzero(rank >= n // 2)[0] if wcfg.cold_from_tail else n
    cold[rng.choice(pool, n_cold, replace=False)] = True
    prior = rng.dirichlet(np.full(s, 3.0))
    a_cat = rng.normal(size=(s, cfg.n_categories))
    a_col = rng.normal(size=(s, cfg.n_colours))
    a_top = rng.normal(size=(s, cfg.n_topics))
    base = wcfg.gamma * log_pop
    if wcfg.appeal:
        g_cat = appeal_rng.normal(size=cfg.n_categories)
        g_col = appeal_rng.normal(size=cfg.n_colours)
        g_top = appeal_rng.normal(size=cfg.n_topics)
        base = base + wcfg.appeal * (g_cat[category] + g_col[colour] + g_top[topic])
    util = wcfg.beta * (a_cat[:, category] + a_col[:, colour] + a_top[:, topic])  # (S, N)
    if wcfg.idiosyncrasy:  # what content does not show: only the item's id (and its clicks) can tell
        util = util + wcfg.idiosyncrasy * appeal_rng.normal(size=(s, n))
    logits = base[None, :] + util
    log_p_all = logits - logsumexp(logits, axis=1)[:, None]
    warm_logits = np.where(cold[None, :], -np.inf, logits)
    log_p_warm = warm_logits - logsumexp(warm_logits, axis=1)[:, None]
    return World(cfg, wcfg, category, colour, topic, log_pop, cold, prior, base, log_p_all, log_p_warm)


def sample_from_segments(log_p: np.ndarray, segments: np.ndarray, counts: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """Draw counts[u] items for each user u from P(. | segments[u]); returns 0-based item indices."""
    total = int(counts.sum())
    out = np.empty(total, dtype=np.int64)
    owner = np.repeat(np.arange(len(segments)), counts)
    seg_of_draw = segments[owner]
    u = rng.random(total)
    for s in range(log_p.shape[0]):
        idx = np.nonzero(seg_of_draw == s)[0]
        if len(idx) == 0:
            continue
        cdf = np.cumsum(np.exp(log_p[s]))
        cdf /= cdf[-1]
        out[idx] = np.minimum(np.searchsorted(cdf, u[idx], side="right"), len(cdf) - 1)
    return out


# ---------------------------------------------------------------------------------------------
# History worlds: the taste read from the observed history


CHUNK = 8192


def history_taste(world: World, padded: np.ndarray) -> list[np.ndarray]:
    """padded (R, 64) 1-based ids, left-padded -> [theta_cat (R, C), theta_col (R, K), theta_top (R, T)]:
    the recency-weighted mean of the history items' factor one-hots (zeros for an empty history)."""
    real = padded > 0  # (R, 64)
    age = np.arange(HISTORY_LEN - 1, -1, -1)  # slot 63 is the most recent item: age 0
    w = np.where(real, world.wcfg.recency ** age, 0.0)  # (R, 64)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    idx = np.maximum(padded - 1, 0)
    out = []
    for factor, k in ((world.category, world.cfg.n_categories), (world.colour, world.cfg.n_colours),
                      (world.topic, world.cfg.n_topics)):
        theta = np.zeros((len(padded), k))
        np.add.at(theta, (np.repeat(np.arange(len(padded)), HISTORY_LEN), factor[idx].reshape(-1)), w.reshape(-1))
        out.append(theta)
    return out


def _group_terms(world: World, thetas: list[np.ndarray]) -> np.ndarray:
    """(R, G) history_beta * <theta, z_g> for every factor triple g."""
    c = world.cfg
    g = np.arange(world.n_groups)
    cat, col, top = g // (c.n_colours * c.n_topics), (g // c.n_topics) % c.n_colours, g % c.n_topics
    return world.wcfg.history_beta * (thetas[0][:, cat] + thetas[1][:, col] + thetas[2][:, top])


def _group_base(world: World, warm: bool) -> np.ndarray:
    """(G,) log of the summed exp(base) of the items of each factor triple (-inf where none)."""
    base = np.where(world.cold, -np.inf, world.base) if warm else world.base
    out = np.full(world.n_groups, -np.inf)
    grp = world.group
    for g in np.unique(grp):
        b = base[grp == g]
        if np.isfinite(b).any():
            out[g] = logsumexp(b, axis=0)
    return out


def history_log_p(world: World, padded: np.ndarray, items: np.ndarray, warm: bool) -> np.ndarray:
    """log P(items[r] | padded[r]) for 0-based items, in a history world."""
    out = np.empty(len(items))
    gbase = _group_base(world, warm)
    grp = world.group
    for lo in range(0, len(items), CHUNK):
        hi = min(lo + CHUNK, len(items))
        terms = _group_terms(world, history_taste(world, padded[lo:hi]))  # (r, G)
        log_z = logsumexp(gbase[None, :] + terms, axis=1)  # (r,)
        j = items[lo:hi]
        out[lo:hi] = world.base[j] + terms[np.arange(hi - lo), grp[j]] - log_z
    return out


def history_marginal(world: World, padded_all: np.ndarray) -> np.ndarray:
    """(N,) log of the mean over `padded_all`'s histories of P(j | h), over all items (valid/test pool)."""
    gbase = _group_base(world, warm=False)
    acc = np.zeros(world.n_groups)
    for lo in range(0, len(padded_all), CHUNK):
        terms = _group_terms(world, history_taste(world, padded_all[lo:lo + CHUNK]))  # (r, G)
        log_z = logsumexp(gbase[None, :] + terms, axis=1)  # (r,)
        acc += np.exp(terms - log_z[:, None]).sum(axis=0)
    return world.base + np.log(acc[world.group] / len(padded_all))


def sample_from_histories(world: World, padded: np.ndarray, warm: bool, rng: np.random.Generator) -> np.ndarray:
    """One item per row of `padded` from P(. | h) (0-based): a factor triple first, then an item in it."""
    base = np.where(world.cold, -np.inf, world.base) if warm else world.base
    gbase = _group_base(world, warm)
    grp = world.group
    order = np.argsort(grp, kind="stable")  # items grouped by triple
    sorted_grp = grp[order]
    b, gb = base[order], gbase[sorted_grp]
    p = np.exp(np.where(np.isfinite(b), b - np.where(np.isfinite(gb), gb, 0.0), -np.inf))  # within-triple
    within = np.zeros_like(p)
    starts = np.searchsorted(sorted_grp, np.arange(world.n_groups))
    ends = np.searchsorted(sorted_grp, np.arange(world.n_groups), side="right")
    for g in range(world.n_groups):
        if ends[g] > starts[g]:
            cs = np.cumsum(p[starts[g]:ends[g]])
            within[starts[g]:ends[g]] = cs / cs[-1] if cs[-1] > 0 else 0.0
    key = sorted_grp + within  # increasing: triple g's items lie in (g, g + 1]
    u_group, u_item = rng.random(len(padded)), rng.random(len(padded))
    out = np.empty(len(padded), dtype=np.int64)
    for lo in range(0, len(padded), CHUNK):
        hi = min(lo + CHUNK, len(padded))
        logits = gbase[None, :] + _group_terms(world, history_taste(world, padded[lo:hi]))  # (r, G)
        prob = np.exp(logits - logsumexp(logits, axis=1)[:, None])
        cdf = np.cumsum(prob, axis=1)
        g = np.minimum((cdf < (u_group[lo:hi] * cdf[:, -1])[:, None]).sum(axis=1), world.n_groups - 1)
        pos = np.searchsorted(key, g + u_item[lo:hi], side="right")
        out[lo:hi] = order[np.minimum(pos, len(order) - 1)]
    return out


def history_lengths(n: int, rng: np.random.Generator, cfg: SynthConfig | None = None) -> np.ndarray:
    """Full history lengths. With the default config: min 3, median about 6, mean about 8, max 100 (the
    real MicroLens-1M shape)."""
    c = cfg or SynthConfig(n_items=1, n_users=1, n_train=1, n_valid=1, n_test=1, n_tags=1)
    draw = np.floor(rng.lognormal(mean=c.hist_mu, sigma=c.hist_sigma, size=n))
    return np.minimum(c.hist_max, c.hist_min + draw).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Users, histories, rows


@dataclass
class Split:
    user_id: np.ndarray  # (R,)
    owner: np.ndarray  # (R,) row of the user in the split's padded histories
    padded: np.ndarray  # (U, 64) the split's users' histories, 1-based ids, left-padded with 0
    item_id: np.ndarray  # (R,) 1-based
    label: np.ndarray  # (R,)
    group_size: np.ndarray  # (R,) rows of the user's group (negatives + 1, or fewer for a last partial group)


def make_histories(world: World, segments: np.ndarray, rng: np.random.Generator):
    """Full histories as (offsets, flat 1-based ids), and their last 64 left-padded."""
    lengths = history_lengths(len(segments), rng, world.cfg)
    flat = sample_from_segments(world.log_p_warm, segments, lengths, rng) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    padded = np.zeros((len(segments), HISTORY_LEN), dtype=np.int64)
    keep = np.minimum(lengths, HISTORY_LEN)
    # position of each kept draw inside the padded row: right-aligned, most recent last
    starts = offsets[1:] - keep
    rows = np.repeat(np.arange(len(segments)), keep)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1 per user
    src = np.repeat(starts, keep) + within
    padded[rows, HISTORY_LEN - np.repeat(keep, keep) + within] = flat[src]
    return offsets, flat, padded


def make_split(world: World, users: np.ndarray, segments: np.ndarray, padded: np.ndarray, n_rows: int,
               pool_warm: bool, rng: np.random.Generator) -> Split:
    """One clicked item and `negatives` uniform negatives per user, then the rows shuffled."""
    g = world.cfg.group_size
    n_users = math.ceil(n_rows / g)
    assert len(users) == n_users
    sizes = np.full(n_users, g, dtype=np.int64)
    sizes[-1] = n_rows - g * (n_users - 1)
    if world.wcfg.target == "segment":
        log_p = world.log_p_warm if pool_warm else world.log_p_all
        pos = sample_from_segments(log_p, segments, np.ones(n_users, dtype=np.int64), rng)
    else:
        pos = sample_from_histories(world, padded, pool_warm, rng)
    pool = np.nonzero(~world.cold)[0] if pool_warm else np.arange(world.cfg.n_items)
    n_neg = int((sizes - 1).sum())
    neg = pool[rng.integers(0, len(pool), n_neg)]
    owner_neg = np.repeat(np.arange(n_users), sizes - 1)
    owner = np.concatenate([np.arange(n_users), owner_neg])
    items = np.concatenate([pos, neg]) + 1
    labels = np.concatenate([np.ones(n_users, np.int64), np.zeros(n_neg, np.int64)])
    order = rng.permutation(len(owner))
    owner, items, labels = owner[order], items[order], labels[order]
    return Split(users[owner], owner, padded, items, labels, sizes[owner])


def segment_log_p(world: World, split: Split, use_history: bool) -> np.ndarray:
    """log P(item_id | item_seq) per row in a segment world (the segment posterior from the history);
    with use_history=False, log P(item_id) under the prior."""
    n = len(split.owner)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, 65_536):
        hi = min(lo + 65_536, n)
        h = split.padded[split.owner[lo:hi]]
        mask = (h > 0) & use_history
        ll = np.zeros((hi - lo, world.cfg.n_segments))
        for s in range(world.cfg.n_segments):
            lp = world.log_p_warm[s][np.maximum(h - 1, 0)]
            ll[:, s] = np.where(mask, lp, 0.0).sum(axis=1)
        log_post = np.log(world.prior)[None, :] + ll
        log_post -= logsumexp(log_post, axis=1)[:, None]
        out[lo:hi] = logsumexp(log_post + world.log_p_all[:, split.item_id[lo:hi] - 1].T, axis=1)
    return out


def oracle_proba(world: World, split: Split, pool_size: int, use_history: bool = True,
                 marginal: np.ndarray | None = None) -> np.ndarray:
    """Exact P(label = 1 | item_seq, item_id) for each row of a valid/test split (module docstring).

    With `use_history=False` it is P(label = 1 | item_id) alone: the best a model that ignores the
    history can do. History worlds need `marginal` for that (`history_marginal`).
    """
    if world.wcfg.target == "segment":
        log_pj = segment_log_p(world, split, use_history)
    elif use_history:
        log_pj = history_log_p(world, split.padded[split.owner], split.item_id - 1, warm=False)
    else:
        if marginal is None:
            raise ValueError("a history world's history-blind oracle needs the marginal")
        log_pj = marginal[split.item_id - 1]
    g = split.group_size.astype(np.float64)
    pos = np.exp(log_pj) / g
    neg = (1.0 - 1.0 / g) / pool_size
    return pos / (pos + neg)
