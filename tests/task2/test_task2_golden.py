"""Seeded golden values of both models' forward pass (pinned to the locked torch version).

The expected logits live in tests/task2/golden_forward.json. A deliberate change to the models (or a
torch upgrade) regenerates them with:

    python tests/task2/test_task2_golden.py --regenerate

and the diff of that JSON goes into the commit that changes the model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).with_name("golden_forward.json")
N_ITEMS = 60


def _inputs():
    g = torch.Generator().manual_seed(1234)
    seq = torch.randint(1, N_ITEMS, (5, 20), generator=g)
    lengths = torch.tensor([1, 3, 7, 20, 0])
    seq[torch.arange(20)[None, :] < (20 - lengths)[:, None]] = 0
    item = torch.randint(1, N_ITEMS, (5,), generator=g)
    likes = torch.randint(1, 11, (5,), generator=g)
    views = torch.randint(1, 11, (5,), generator=g)
    table = torch.randn(N_ITEMS, 128, generator=g) * 0.1
    table[0] = 0
    tags = torch.randint(0, 30, (N_ITEMS, 5), generator=g)
    tags[0] = 0
    return (seq, item, likes, views), table, tags


def compute() -> dict:
    """Logits of SASRecDCN (reference sizes, both poolings), MeanPoolMLP and DIN (baseline sizes), seed 0,
    eval mode."""
    from task2.din import DIN, DINConfig
    from task2.model import SASRecDCN, SASRecDCNConfig
    from task2.plain import MeanPoolMLP, MeanPoolMLPConfig

    batch, table, tags = _inputs()
    out = {}
    for pooling in ("last", "mean"):
        torch.manual_seed(0)
        model = SASRecDCN(SASRecDCNConfig(n_items=N_ITEMS, max_len=16, pooling=pooling), table).eval()
        with torch.no_grad():
            out[f"SASRecDCN_{pooling}"] = [float(v) for v in model(*batch)]
    torch.manual_seed(0)
    plain = MeanPoolMLP(MeanPoolMLPConfig(n_items=N_ITEMS, max_len=16), table).eval()
    with torch.no_grad():
        out["MeanPoolMLP"] = [float(v) for v in plain(*batch)]
    torch.manual_seed(0)
    din = DIN(DINConfig(n_items=N_ITEMS, n_tags=30), table, tags).eval()
    with torch.no_grad():
        out["DIN"] = [float(v) for v in din(*batch)]
    return out


def test_forward_matches_golden_values():
    stored = json.loads(GOLDEN.read_text())
    got = compute()
    assert set(got) == set(stored["logits"])
    for name, values in stored["logits"].items():
        torch.testing.assert_close(torch.tensor(got[name]), torch.tensor(values), rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}\n(torch {torch.__version__}; golden made with "
                                   f"{stored['torch']}; regenerate deliberately: {stored['regenerate']})")


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: python tests/task2/test_task2_golden.py --regenerate")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    doc = {"torch": torch.__version__, "regenerate": "python tests/task2/test_task2_golden.py --regenerate",
           "logits": compute()}
    GOLDEN.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
