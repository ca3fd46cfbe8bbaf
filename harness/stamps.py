"""Cheap stage stamps: what a pipeline stage read, fingerprinted without re-reading gigabytes every run.

- A file: its sha256, remembered in a `HashCache` by (size, mtime, ctime, inode), so a file is read once
  and a later run only stats it. ctime and the inode change on any write or replacement, even one that
  restores the old mtime.
- A folder of at most MANY_FILES files: the sorted (relative path, sha256) list of its files.
- A folder of more files (the covers: 91,717 of them): a listing fingerprint, the sorted (relative path,
  size, mtime) list, never the bytes. A cover replaced by a file of the same size with its mtime
  restored goes unnoticed; `./reproduce.sh --force` redoes everything.

A generated dataset's `oracle/` folder is never part of a digest (no stage reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from core.io import sha256_file, write_json_atomic

MANY_FILES = 256


class HashCache:
    """sha256 of files by path, valid while (size, mtime_ns, ctime_ns, inode) are unchanged; stored as JSON
    at `path` (None: in memory only). `hits` and `hashed_bytes` say what the cache saved and cost."""

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.entries: dict = {}
        self.dirty = False
        self.hits = 0
        self.hashed_bytes = 0
        if self.path is not None and self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                if isinstance(doc, dict) and isinstance(doc.get("files"), dict):
                    self.entries = doc["files"]
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache only costs re-hashing

    @staticmethod
    def signature(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def sha256(self, path: str | Path) -> str:
        path = Path(path)
        key = str(path.resolve())
        sig = self.signature(path.stat())
        entry = self.entries.get(key)
        if isinstance(entry, dict) and entry.get("sig") == sig and isinstance(entry.get("sha256"), str):
            self.hits += 1
            return entry["sha256"]
        digest = sha256_file(path)
        self.hashed_bytes += sig[0]
        self.entries[key] = {"sig": sig, "sha256": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        write_json_atomic(self.path, {"note": "sha256 by (size, mtime_ns, ctime_ns, inode); harness/stamps.py",
                                      "files": live})
        self.dirty = False


def _files(folder: Path) -> list[tuple[str, os.stat_result]]:
    """(relative posix path, stat) of every file under `folder`, sorted; `oracle/` at the top is left out."""
    out = []
    stack = [(folder, "")]
    while stack:
        here, rel = stack.pop()
        with os.scandir(here) as entries:
            for e in entries:
                name = f"{rel}{e.name}"
                if not rel and e.name == "oracle":
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append((Path(e.path), name + "/"))
                elif e.is_file():
                    out.append((name, e.stat()))
    out.sort(key=lambda x: x[0])
    return out


def listing_fingerprint(folder: str | Path, files: list | None = None) -> str:
    """sha256 of the sorted (relative path, size, mtime_ns) list of the files under `folder` (`files`: that
    list of (relative path, stat) when the caller has it already)."""
    files = files if files is not None else _files(Path(folder))
    text = "".join(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n" for rel, st in files)
    return "listing:" + hashlib.sha256(text.encode()).hexdigest()


def digest(path: str | Path, cache: HashCache | None = None) -> str:
    """A file's sha256, a folder's digest (see the module docstring), or 'absent'."""
    path = Path(path)
    cache = cache if cache is not None else HashCache()
    if path.is_file():
        return cache.sha256(path)
    if not path.is_dir():
        return "absent"
    files = _files(path)
    if len(files) > MANY_FILES:
        return listing_fingerprint(path, files)
    h = hashlib.sha256()
    for rel, _ in files:
        h.update(f"{rel}\0{cache.sha256(path / rel)}\n".encode())
    return h.hexdigest()
