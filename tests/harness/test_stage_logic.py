"""The pipeline's stage logic on a chain of three tiny stages: what re-runs after which change.

a reads in.txt and writes a.txt; b reads a.txt and its config and writes b.txt; c reads b.txt and writes
c.txt. Each stage appends its name to ran.txt when it runs.
"""

from __future__ import annotations

import os
import sys

import pytest

from harness.pipeline import Runner, Stage
from harness.stamps import HashCache


def _copy(src, dst, log, *extra):
    """A stage: dst = src + '+' (+ the extra files' contents and flags), and its name appended to log."""
    code = ("import os, sys; s, d, log, *x = sys.argv[1:]; "
            "x = [open(e).read() if os.path.isfile(e) else e for e in x]; "
            "open(d, 'w').write(open(s).read() + '+' + ''.join(x)); open(log, 'a').write(d[-5] + '\\n')")
    return [sys.executable, "-c", code, str(src), str(dst), str(log), *map(str, extra)]


@pytest.fixture
def chain(tmp_path):
    (tmp_path / "in.txt").write_text("data")
    (tmp_path / "b.json").write_text('{"epochs": 3}')
    log = tmp_path / "ran.txt"

    def stages(b_flag: str = ""):
        b_cmd = _copy(tmp_path / "a.txt", tmp_path / "b.txt", log, tmp_path / "b.json", *([b_flag] if b_flag else []))
        return [Stage("a", _copy(tmp_path / "in.txt", tmp_path / "a.txt", log), [tmp_path / "in.txt"],
                      [tmp_path / "a.txt"]),
                Stage("b", b_cmd, [tmp_path / "a.txt", tmp_path / "b.json"], [tmp_path / "b.txt"]),
                Stage("c", _copy(tmp_path / "b.txt", tmp_path / "c.txt", log), [tmp_path / "b.txt"],
                      [tmp_path / "c.txt"])]

    def run(force: bool = False, b_flag: str = "") -> list[str]:
        """Run the chain as a fresh pipeline process would (a new Runner, the cache on disk); return the
        stages that ran."""
        log.write_text("")
        runner = Runner(tmp_path / "run", force=force, hashes=HashCache(tmp_path / "run" / "hashes.json"))
        for stage in stages(b_flag):
            runner.run(stage)
        return log.read_text().split()

    assert run() == ["a", "b", "c"]
    return tmp_path, run


def test_nothing_changed_nothing_runs(chain):
    _, run = chain
    assert run() == []


def test_an_input_edited_in_place_reruns_its_stage_and_the_later_ones(chain):
    root, run = chain
    st = os.stat(root / "in.txt")
    (root / "in.txt").write_text("dat2")  # same size
    os.utime(root / "in.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    assert run() == ["a", "b", "c"]
    assert (root / "c.txt").read_text() == 'dat2++{"epochs": 3}+'


def test_a_changed_config_reruns_its_stage_and_the_later_ones_only(chain):
    root, run = chain
    (root / "b.json").write_text('{"epochs": 4}')
    assert run() == ["b", "c"]


def test_a_changed_command_reruns_its_stage(chain):
    _, run = chain
    assert run(b_flag="--epochs=4") == ["b", "c"]


def test_an_output_edited_by_hand_reruns_the_stages_that_read_it(chain):
    """The edited output itself is kept (its own stage's inputs did not change); every stage that reads
    it runs again, so nothing downstream is stale."""
    root, run = chain
    (root / "a.txt").write_text("edited by hand")
    assert run() == ["b", "c"]
    assert (root / "c.txt").read_text().startswith("edited by hand+")


def test_a_deleted_output_reruns_its_stage(chain):
    root, run = chain
    (root / "b.txt").unlink()
    assert run() == ["b"]  # b.txt comes back with the same bytes, so c is up to date: stamps hold contents


def test_force_reruns_everything(chain):
    _, run = chain
    assert run(force=True) == ["a", "b", "c"]
