"""Per-modality embedding caches: fixed chunks of item ids, one safetensors file each, written atomically.

Layout, under OUT_DIR/cache/:

    <modality>-<key>/manifest.json          what made the chunks (model, settings, item fingerprint)
    <modality>-<key>/chunk-00000.safetensors items 1..chunk_size
    <modality>-<key>/chunk-00001.safetensors items chunk_size+1..2*chunk_size, ...
    <modality>-<key>/runs/*.json             timings of each process that computed chunks

`key` hashes everything that changes the numbers: the model as named and its identity (the hub snapshot,
or the sha256 of the folder's weight and config files), the settings of the modality,
the chunk and batch sizes (batches never cross a chunk, so a chunk's bytes depend only on its items)
and a fingerprint of the inputs (the titles, or the item id range for covers). A chunk holds:

    emb      float32 (n, dim)  L2-normalised; all zeros where status != 0
    status   uint8 (n,)        0 ok; images: 1 missing file, 2 unreadable file; text: 1 empty title
    item_id  int64 (n,)        the chunk's ids, checked on reading
    sha256   uint8 (n, 32)     images only: sha256 of the cover file's bytes (zeros when missing)

and one metadata entry (one only: safetensors writes several in no fixed order), `precision`
(e.g. cpu/float32), so that chunks made on different devices can be told apart. Finished chunks are
never recomputed: an interrupted run, or one shard of many, resumes by computing only the chunks
whose file is absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.io import write_bytes_atomic, write_json_atomic

OK, MISSING, UNREADABLE = 0, 1, 2
EMPTY_TITLE = 1


def cache_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Chunk:
    emb: np.ndarray
    status: np.ndarray
    item_id: np.ndarray
    sha256: np.ndarray | None
    precision: str


class ModalityCache:
    """The chunk files of one modality under one key.

    Args:
        root: OUT_DIR/cache.
        modality: "image" or "text".
        spec: the JSON-ready description that the key hashes (written to manifest.json).
        n_items: N; chunk c holds ids c*chunk_size+1 .. min(N, (c+1)*chunk_size).
        chunk_size: items per chunk.
    """

    def __init__(self, root: Path, modality: str, spec: dict, n_items: int, chunk_size: int):
        self.modality, self.spec, self.n_items, self.chunk_size = modality, spec, n_items, chunk_size
        self.key = cache_key(spec)
        self.dir = Path(root) / f"{modality}-{self.key}"
        self.n_chunks = (n_items + chunk_size - 1) // chunk_size

    def ids(self, c: int) -> np.ndarray:
        lo = c * self.chunk_size + 1
        return np.arange(lo, min(self.n_items, lo + self.chunk_size - 1) + 1, dtype=np.int64)

    def path(self, c: int) -> Path:
        return self.dir / f"chunk-{c:05d}.safetensors"

    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def done(self, c: int) -> bool:
        return self.path(c).is_file()

    def missing(self, chunks=None) -> list[int]:
        return [c for c in (range(self.n_chunks) if chunks is None else chunks) if not self.done(c)]

    def read_manifest(self) -> dict | None:
        p = self.manifest_path()
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            raise UserError("cache manifest is unreadable; delete this cache folder to recompute it",
                            path=p) from None

    def write_manifest(self, model: dict) -> None:
        """Record the model that makes the chunks; a different resolved model is refused (mixed caches)."""
        old = self.read_manifest()
        doc = {"modality": self.modality, "key": self.key, "spec": self.spec, "n_items": self.n_items,
               "chunk_size": self.chunk_size, "n_chunks": self.n_chunks, "model": model}
        if old is not None:
            keep = ("revision", "sha256")
            if {k: old.get("model", {}).get(k) for k in keep} != {k: model.get(k) for k in keep}:
                raise UserError(f"this cache was made with {self.spec.get('model')} at "
                                f"{old['model'].get('revision') or old['model'].get('sha256')}, but it now "
                                f"resolves to {model.get('revision') or model.get('sha256')}; delete the "
                                f"folder or use a new --out", path=self.dir)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path(), doc)

    def write(self, c: int, emb: np.ndarray, status: np.ndarray, sha: np.ndarray | None, precision: str) -> None:
        from safetensors.numpy import save

        ids = self.ids(c)
        assert emb.shape[0] == len(ids) == status.shape[0], (emb.shape, len(ids), status.shape)
        tensors = {"emb": np.ascontiguousarray(emb, dtype=np.float32),
                   "status": np.ascontiguousarray(status, dtype=np.uint8), "item_id": ids}
        if sha is not None:
            tensors["sha256"] = np.ascontiguousarray(sha, dtype=np.uint8)
        for stale in self.dir.glob(f".{self.path(c).name}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        write_bytes_atomic(self.path(c), save(tensors, metadata={"precision": precision}))

    def read(self, c: int) -> Chunk:
        from safetensors import SafetensorError, safe_open

        path = self.path(c)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, SafetensorError, ValueError) as e:
            raise UserError(f"cache chunk is unreadable ({e}); delete it and run again to recompute it",
                            path=path) from None
        if not np.array_equal(t.get("item_id"), self.ids(c)):
            raise UserError("cache chunk holds other item ids than its name says; delete it and run again",
                            path=path)
        return Chunk(emb=t["emb"], status=t["status"], item_id=t["item_id"], sha256=t.get("sha256"),
                     precision=meta.get("precision", "unknown"))

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
        """(emb (N, dim), status (N,), sha256 (N, 32) or None, precisions) in item id order."""
        missing = self.missing()
        if missing:
            raise UserError(f"{len(missing)} of {self.n_chunks} {self.modality} chunks are not computed yet "
                            f"(first: {self.path(missing[0]).name}); finish the shards, or run without "
                            f"--merge to compute them here", path=self.dir)
        chunks = [self.read(c) for c in range(self.n_chunks)]
        emb = np.concatenate([ch.emb for ch in chunks])
        status = np.concatenate([ch.status for ch in chunks])
        sha = np.concatenate([ch.sha256 for ch in chunks]) if chunks[0].sha256 is not None else None
        return emb, status, sha, sorted({ch.precision for ch in chunks})


def shard_chunks(n_chunks: int, shard: tuple[int, int] | None) -> list[int]:
    """Chunks of shard K of N (1-based): a contiguous range, the N ranges covering all chunks once."""
    if shard is None:
        return list(range(n_chunks))
    k, n = shard
    return list(range((k - 1) * n_chunks // n, k * n_chunks // n))
