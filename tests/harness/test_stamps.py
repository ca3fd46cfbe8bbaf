"""Stage stamps that do not re-read the data: a hash cache for files, a listing fingerprint for big folders."""

from __future__ import annotations

import os

import pytest

import harness.stamps as S
from core.io import sha256_file


def _refuse_reads(monkeypatch):
    def boom(path, *a, **k):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(S, "sha256_file", boom)


def test_a_folder_of_many_files_is_fingerprinted_by_its_listing(tmp_path, monkeypatch):
    folder = tmp_path / "covers"
    folder.mkdir()
    for i in range(S.MANY_FILES + 1):
        (folder / f"{i}.jpg").write_bytes(b"x" * (i % 7 + 1))
    first = S.digest(folder)
    _refuse_reads(monkeypatch)  # not one cover is read
    assert first.startswith("listing:") and S.digest(folder) == first
    path = folder / "3.jpg"
    st = path.stat()
    path.write_bytes(b"y" * 100)  # another size
    assert S.digest(folder) != first
    path.write_bytes(b"x" * (3 % 7 + 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert S.digest(folder) == first  # same names, sizes and mtimes: the documented blind spot
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert S.digest(folder) != first
    (folder / "extra.jpg").write_bytes(b"")
    assert S.digest(folder) != S.digest(tmp_path / "nothing") == "absent"


def test_files_are_hashed_once_and_remembered(tmp_path, monkeypatch):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"a" * 1000)
    cache = S.HashCache(tmp_path / "hashes.json")
    assert cache.sha256(data) == sha256_file(data) and cache.hashed_bytes == 1000
    cache.save()
    again = S.HashCache(tmp_path / "hashes.json")  # the next run
    _refuse_reads(monkeypatch)
    assert again.sha256(data) == sha256_file(data) and again.hits == 1 and again.hashed_bytes == 0
    st = data.stat()
    data.write_bytes(b"b" * 1000)  # same size, mtime put back: ctime still changes
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(AssertionError, match="read"):
        again.sha256(data)


def test_a_small_folder_digests_the_contents_and_skips_the_oracle(tmp_path):
    root = tmp_path / "data"
    (root / "oracle").mkdir(parents=True)
    (root / "x1").mkdir()
    (root / "x1" / "train.parquet").write_bytes(b"rows")
    (root / "oracle" / "oracle.json").write_text("{}")
    cache = S.HashCache()
    first = S.digest(root, cache)
    assert not first.startswith("listing:")
    (root / "oracle" / "oracle.json").write_text('{"changed": 1}')
    assert S.digest(root, cache) == first
    (root / "x1" / "train.parquet").write_bytes(b"ROWS")
    assert S.digest(root, cache) != first


def test_a_damaged_cache_file_only_costs_rehashing(tmp_path):
    (tmp_path / "hashes.json").write_text("{not json")
    data = tmp_path / "f"
    data.write_bytes(b"1")
    assert S.HashCache(tmp_path / "hashes.json").sha256(data) == sha256_file(data)
