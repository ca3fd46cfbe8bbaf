"""Fixtures for the rules, package and verify tests: runs and packages built once per session.

Session packages are read-only templates: a test that changes a package copies it first (`copy_package`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pkgkit import copy_package, make_run, package


def _package(tmp_path_factory, data: Path, track: int, name: str) -> Path:
    base = tmp_path_factory.mktemp(name)
    run = make_run(base / "run", data, track=track)
    return package(run, base / "submission", data)


@pytest.fixture(scope="session")
def pkg2(tiny_data, tmp_path_factory) -> Path:
    """A track 2 package (SASRecDCN on the provided item_info) of the tiny dataset."""
    return _package(tmp_path_factory, tiny_data, 2, "pkg2")


@pytest.fixture(scope="session")
def pkg3(tiny_data, tmp_path_factory) -> Path:
    """A track 3 package: Task 1 item_info + SASRecDCN."""
    return _package(tmp_path_factory, tiny_data, 3, "pkg3")


@pytest.fixture(scope="session")
def pkg1(tiny_data, tmp_path_factory) -> Path:
    """A track 1 package: Task 1 item_info + the baseline DIN."""
    return _package(tmp_path_factory, tiny_data, 1, "pkg1")


@pytest.fixture
def p2(pkg2, tmp_path) -> Path:
    """A private copy of the track 2 package that a test may break."""
    return copy_package(pkg2, tmp_path / "pkg")


@pytest.fixture
def p3(pkg3, tmp_path) -> Path:
    return copy_package(pkg3, tmp_path / "pkg")


@pytest.fixture
def p1(pkg1, tmp_path) -> Path:
    return copy_package(pkg1, tmp_path / "pkg")
