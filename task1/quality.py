"""An embedding quality metric that needs no CTR model: next-item recall@K on held-out train clicks.

For each evaluation user (a seeded sample of train users; their clicked train item is held out of
every reducer's training data):

    query  q = normalise(mean of the embeddings of the user's train history items)
    scores s_j = <q, e_j> for every item j in 1..N, the history's own items excluded
    hit@K  = P(target among the top K) with ties broken at random: clip((K - #greater) / #equal, 0, 1)

recall@K is the mean hit@K over users; MRR uses the expected rank under random tie breaking. Two
references are computed on the same users: `popularity` ranks items by how often they occur in the
training sequences (a strong baseline on long-tailed data), `random` is K / #candidates.
"""

from __future__ import annotations

import numpy as np

from task1.data import Histories


def _hits(scores: np.ndarray, target: np.ndarray, excluded: list[np.ndarray], ks) -> tuple[dict, np.ndarray]:
    """scores (M, N+1) with column 0 the padding; returns per-K hit probabilities and expected ranks."""
    scores = scores.copy()
    scores[:, 0] = -np.inf
    for r, ex in enumerate(excluded):
        keep = ex[ex != target[r]]
        scores[r, keep] = -np.inf
    t = scores[np.arange(len(target)), target][:, None]
    greater = (scores > t).sum(axis=1)
    equal = (scores == t).sum(axis=1)  # includes the target itself
    hits = {k: np.clip((k - greater) / equal, 0.0, 1.0) for k in ks}
    rank = greater + (equal + 1) / 2.0  # expected 1-based rank
    return hits, rank


def next_item_recall(emb: np.ndarray, hist: Histories, ks=(10, 50), block: int = 256) -> dict:
    """emb: (N+1, d) unit rows, row 0 padding. Returns recall@K, MRR and the two references."""
    ks = tuple(int(k) for k in ks)
    n_items = emb.shape[0] - 1
    m = len(hist.eval_users)
    if m == 0:
        return {"users": 0, "note": "no train user with a history and a clicked item"}
    counts = np.bincount(hist.seq_items, minlength=n_items + 1).astype(np.float64)
    acc = {name: {k: 0.0 for k in ks} for name in ("embedding", "popularity")}
    mrr = {"embedding": 0.0, "popularity": 0.0}
    rand = {k: 0.0 for k in ks}
    e32 = emb.astype(np.float32)
    for lo in range(0, m, block):
        users = hist.eval_users[lo:lo + block]
        target = hist.eval_target[lo:lo + block]
        histories = [hist.history(int(u)) for u in users]
        q = np.stack([e32[h].mean(axis=0) for h in histories])  # (B, d)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        popular = np.broadcast_to(counts, (len(users), n_items + 1))
        for name, scores in (("embedding", q @ e32.T), ("popularity", popular)):
            hits, rank = _hits(np.asarray(scores, dtype=np.float64), target, histories, ks)
            for k in ks:
                acc[name][k] += float(hits[k].sum())
            mrr[name] += float((1.0 / rank).sum())
        for r, h in enumerate(histories):
            cand = n_items - len(np.setdiff1d(h, [target[r]]))
            for k in ks:
                rand[k] += min(1.0, k / cand)
    out = {"metric": "next-item recall@K of held-out train clicks (query: mean of history embeddings)",
           "users": int(m), "candidates": int(n_items)}
    for k in ks:
        out[f"recall@{k}"] = round(acc["embedding"][k] / m, 6)
    out["mrr"] = round(mrr["embedding"] / m, 6)
    out["popularity"] = {**{f"recall@{k}": round(acc["popularity"][k] / m, 6) for k in ks},
                         "mrr": round(mrr["popularity"] / m, 6)}
    out["random"] = {f"recall@{k}": round(rand[k] / m, 6) for k in ks}
    return out
