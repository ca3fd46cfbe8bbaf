"""`harness audit`: the final round from the top of the leaderboard down, on three generated packages (one
clean, one with a tampered harness file, one whose re-run differs from its prediction), with the truth."""

from __future__ import annotations

import csv
import json
import shutil

import polars as pl
import pytest

from core.challenge import DATASET_DIR
from pkgkit import repredict, resign


def _leaderboard(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["team", "score", "package"])
        w.writerows(rows)


def test_leaderboard_parsing_and_award_order(tmp_path):
    from referee.audit import award_order, read_leaderboard
    from core.errors import UserError

    _leaderboard(tmp_path / "lb.csv", [["B", "0.7", "b"], ["A", "0.9", "a"], ["C", "0.7", "c"]])
    assert [e.team for e in read_leaderboard(tmp_path / "lb.csv")] == ["A", "B", "C"]  # ties keep file order
    rows = award_order([{"passed": False}, {"passed": True}, {"passed": True}])
    assert [r["award"] for r in rows] == [None, 1, 2]
    _leaderboard(tmp_path / "bad.csv", [["X", "0.5", "../elsewhere"]])
    with pytest.raises(UserError, match="line 2: package '../elsewhere' is not a folder name"):
        read_leaderboard(tmp_path / "bad.csv")


def test_audit_refuses_a_truth_the_packages_could_read(tmp_path):
    from referee.audit import run_audit
    from core.errors import UserError

    (tmp_path / "data" / DATASET_DIR).mkdir(parents=True)
    truth = tmp_path / "data" / DATASET_DIR / "ground_truth.csv"
    truth.write_text("ID,label\n0,1\n")
    (tmp_path / "subs").mkdir()
    _leaderboard(tmp_path / "lb.csv", [["A", "0.5", "a"]])
    with pytest.raises(UserError, match="lies where the packages' code can read it"):
        run_audit(tmp_path / "lb.csv", tmp_path / "subs", tmp_path / "data", tmp_path / "out", truth=truth)


@pytest.mark.skipif("not __import__('referee.sandbox.plan', fromlist=['probe']).probe().available",
                    reason="the audit re-runs packages in the sandbox, which this machine cannot start")
def test_audit_three_packages_award_order_and_resume(pkg2, tiny_data, tmp_path, harness_cli):
    from referee.score import score

    subs = tmp_path / "submissions"
    subs.mkdir()
    shutil.copytree(pkg2, subs / "clean")
    shutil.copytree(pkg2, subs / "tampered")
    with open(subs / "tampered/core/schemas.py", "a") as f:
        f.write("\n# blends a tree model into the scores\n")
    resign(subs / "tampered")
    shutil.copytree(pkg2, subs / "differs")  # prediction, zip, predict.json and manifest all agree; only a re-run tells
    repredict(subs / "differs", lambda f: f.with_columns((1.0 - pl.col("Task2")).alias("Task2")))
    truth = tmp_path / "ground_truth.csv"
    shutil.copyfile(tiny_data / "oracle" / "ground_truth.csv", truth)
    claimed = {n: score(subs / n / "prediction.csv", truth)["scores"]["AUC_Task2"] for n in ("clean", "differs")}
    _leaderboard(tmp_path / "lb.csv", [["Team Clean", claimed["clean"], "clean"],
                                       ["Team Tamper", 0.99, "tampered"],
                                       ["Team Differs", max(claimed["differs"], claimed["clean"] + 1e-3), "differs"]])
    out = tmp_path / "audit"
    code, stdout, stderr = harness_cli("audit", tmp_path / "lb.csv", subs, "--data", tiny_data, "--truth", truth,
                                       "--out", out, "--timeout", "600")
    assert code == 1, stderr  # some teams fail
    doc = json.loads((out / "audit.json").read_text())
    rows = doc["rows"]
    assert [r["team"] for r in rows] == ["Team Tamper", "Team Differs", "Team Clean"]  # score order
    assert [r["award"] for r in rows] == [None, None, 1]  # the failures pass their places on
    tamper, differs, clean = rows
    assert tamper["verify"].startswith("FAIL (PKG-RELEASED-CODE") and tamper["rerun"].startswith("not run")
    assert differs["verify"] == "FAIL (RERUN-PREDICT)" and differs["rerun"].startswith("differs (")
    assert differs["reproduced_score"] == pytest.approx(claimed["clean"])  # the re-run is the clean model again
    assert clean["verify"] == "PASS" and clean["rerun"] == "byte-identical"
    assert clean["reproduced_score"] == pytest.approx(claimed["clean"], abs=1e-12) and clean["passed"]
    clean_line = [line for line in stdout.splitlines() if line.startswith("| 3 | Team Clean |")]
    assert len(clean_line) == 1 and clean_line[0].split("|")[7].strip() == "1"  # the award column
    assert (out / "audit.md").read_text().strip() == stdout.strip()
    table = list(csv.DictReader((out / "audit.csv").read_text().splitlines()))
    assert [(r["team"], r["award"]) for r in table] == [("Team Tamper", ""), ("Team Differs", ""), ("Team Clean", "1")]
    assert "[1/3] Team Tamper: verifying" in stderr
    # an interrupted or repeated audit resumes: finished teams are not verified again
    code, stdout2, stderr2 = harness_cli("audit", tmp_path / "lb.csv", subs, "--data", tiny_data, "--truth", truth,
                                         "--out", out, "--timeout", "600")
    assert stderr2.count(": resumed (") == 3 and json.loads((out / "audit.json").read_text())["rows"] == rows


def test_audit_awards_only_what_it_verified(pkg2, tiny_data, tmp_path):
    """Static audit (no re-run): a resumed PASS is not kept once a file changes (the key covers every file,
    not only MANIFEST.json); a team folder that is a link, in or outside SUBMISSIONS_DIR, is not judged; one
    package under two names places once; a team name that a spreadsheet would run as a formula is escaped."""
    from referee.audit import run_audit

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(pkg2, subs / "clean")
    shutil.copytree(pkg2, subs / "twin")
    (subs / "alias").symlink_to(subs / "clean")
    outside = tmp_path / "elsewhere"
    shutil.copytree(pkg2, outside)
    (subs / "far").symlink_to(outside)
    formula = '=HYPERLINK("http://evil.example","x")'
    _leaderboard(tmp_path / "lb.csv", [[formula, "0.9", "clean"], ["Twin", "0.8", "twin"],
                                       ["Alias", "0.7", "alias"], ["Far", "0.6", "far"], ["Pipe|Team\nX", "0.5", "gone"]])
    out = tmp_path / "audit"
    doc = run_audit(tmp_path / "lb.csv", subs, tiny_data, out, rerun=None)
    rows = {r["package"]: r for r in doc["rows"]}
    assert rows["clean"]["award"] == 1 and rows["clean"]["verify"] == "PASS"
    assert rows["twin"]["award"] is None and rows["twin"]["reason"] == f"the same package content as {formula}"
    assert rows["alias"]["award"] is None and "symbolic link" in rows["alias"]["reason"]
    assert rows["far"]["award"] is None and "symbolic link" in rows["far"]["reason"]
    with open(out / "audit.csv", newline="") as f:
        cells = [row[1] for row in csv.reader(f)]
    assert cells[1] == "'" + formula  # text, not a formula
    md = (out / "audit.md").read_text()
    assert formula in md and "| Pipe\\|TeamX |" in md  # a cell cannot break the table (csv drops the newline)

    # a file changes after the PASS, MANIFEST.json untouched: the resumed result is not reused
    with open(subs / "clean" / "core" / "schemas.py", "a") as f:
        f.write("\n# changed after the audit passed it\n")
    again = {r["package"]: r for r in run_audit(tmp_path / "lb.csv", subs, tiny_data, out, rerun=None)["rows"]}
    assert again["clean"]["award"] is None and "PKG-MANIFEST" in again["clean"]["verify"]
    assert again["twin"]["award"] == 1  # its place passes on, and it no longer shares the content
