"""Task 1's models are open source: every encoder is recorded with its id, a pinned revision or content
hash, and a licence; an unknown or non-open licence is a finding."""

from __future__ import annotations

from core.errors import error, warning
from core.spdx import MODEL_LICENSES, OPEN_LICENSES, spdx_of
from referee.rules.registry import rule


@rule("T1-OPEN-SOURCE", "Task 1's models are recorded (role, id, revision or sha256, licence) and their "
      "licences are open source; an unknown licence is a finding", tracks=(1, 3))
def check_open_source(ctx):
    rid = "T1-OPEN-SOURCE"
    rel = ctx.one("task1_record")
    if rel is None:
        return []  # PKG-MANIFEST reports the missing task1.json
    record = ctx.task1_record()
    if record is None:
        return [error(rid, "task1.json is not a readable JSON object", rel)]
    models = record.get("models")
    if not isinstance(models, list):
        return [error(rid, 'task1.json has no "models" list: record every encoder Task 1 used', rel)]
    out = []
    for i, m in enumerate(models):
        if not isinstance(m, dict) or not isinstance(m.get("id"), str) or not m["id"]:
            out.append(error(rid, f"models[{i}] has no id", rel))
            continue
        mid = m["id"]
        recorded = m.get("license", m.get("licence"))
        spdx = spdx_of(recorded)
        known = MODEL_LICENSES.get(mid)
        if not m.get("role"):
            out.append(warning(rid, f"{mid}: no role (image / text) recorded", rel))
        if not (m.get("revision") or m.get("sha256")):
            out.append(warning(rid, f"{mid}: neither a hub revision nor a content sha256 is recorded, so the "
                               "exact weights cannot be fetched again", rel))
        if spdx is None or spdx.lower() in ("unknown", "none", "other", "proprietary", "unlicensed"):
            hint = f" (the verifier knows it as {known})" if known else ""
            out.append(error(rid, f"{mid}: licence {recorded!r} is unknown{hint}; Task 1 may use large "
                             "models only if they are open source: record the licence", rel))
        elif spdx not in OPEN_LICENSES:
            out.append(error(rid, f"{mid}: licence {recorded!r} is not an open-source licence", rel))
        elif known is not None and known != spdx:
            out.append(error(rid, f"{mid}: recorded licence {spdx}, but the model is released under {known}", rel))
        elif known is None:
            out.append(warning(rid, f"{mid}: not in the verifier's licence table; the recorded {spdx} is taken "
                               "on trust", rel))
    return out
