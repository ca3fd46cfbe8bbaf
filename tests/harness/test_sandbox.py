"""`harness verify --rerun` in the sandbox: a clean package re-runs byte for byte, a hostile one is contained
and reported, and without isolation the re-run is refused unless --no-sandbox.

The tests that start the sandbox need a machine where `unshare --user --net --mount --pid` works (they are
skipped elsewhere, saying so); the refusal and the safety of sandbox_init run everywhere.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from pkgkit import resign

CKPT = "outputs/task2/model.safetensors"


def _isolation():
    from referee.sandbox.plan import probe

    return probe()


needs_sandbox = pytest.mark.skipif(not _isolation().available,
                                   reason=f"no isolation on this machine: {_isolation().namespaces_note}")


@needs_sandbox
def test_clean_package_reruns_byte_identical_in_the_sandbox(pkg2, tiny_data):
    from referee.verify import render, verify_package

    report = verify_package(pkg2, data=tiny_data, rerun="predict")
    assert report.ok, render(report)
    pred = report.rerun["predict"]
    assert pred["comparison"]["identical"] is True
    assert pred["sandbox"]["ok"] is True and pred["sandbox"]["pid"] == 1  # PID namespace: it is init there
    assert pred["sandbox"]["capabilities"]["effective"].strip("0") == ""
    assert all(events == [] for events in pred["events"].values()), pred["events"]
    assert pred["declared_state"] and pred["strict_load"]["ok"] is True
    text = render(report)
    assert "re-run sandbox: user+network+mount+PID namespaces (unshare)" in text
    assert "re-run predict: prediction.csv byte-identical on cpu" in text


@needs_sandbox
def test_hostile_rerun_is_contained_and_reported(p2, tiny_data, tmp_path):
    """The package's predict connects to a port the verifier's machine listens on, writes beside the test,
    reads a secret, then hangs: nothing gets out, the events streamed before the kill are the evidence."""
    from referee.verify import verify_package

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(30)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    secret, outside = tmp_path / "secret.txt", tmp_path / "OUTSIDE"
    secret.write_text("s3cret")
    with open(p2 / "task2/predict.py", "a") as f:
        f.write(f"""

def _phone_home():
    import socket, time
    a, b = socket.socketpair()  # a local pair, as multiprocessing uses: not the network
    a.sendmsg([b"local"])
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"prediction")
    except OSError:
        pass
    for attempt in (lambda: open({str(outside)!r}, "w").write("x"), lambda: open({str(secret)!r}).read()):
        try:
            attempt()
        except OSError:
            pass
    import os, sys
    with open(os.path.join(os.environ["TMPDIR"], "xgboost.py"), "w") as f:  # a banned name, however spelled
        f.write("BOOSTED = True\\n")
    sys.path.insert(0, os.environ["TMPDIR"])
    __import__("".join(["xg", "boost"]))
    time.sleep(600)


_phone_home()
""")
    resign(p2)
    report = verify_package(p2, data=tiny_data, rerun="predict", timeout=20)
    server.close()
    assert not outside.exists()
    assert accepted in ([], [None])  # no connection ever reached the listening port
    errors = [(f.id, f.message) for f in report.findings if f.severity == "error"]
    assert report.exit_code == 1
    assert any(i == "RERUN-PREDICT" and "ran past the time limit" in m for i, m in errors), errors
    sandbox = [m for i, m in errors if i == "RERUN-SANDBOX"]
    assert any(f"used the network: connect ('127.0.0.1', {port})" in m for m in sandbox), sandbox
    assert not any("sendmsg" in m for m in sandbox), sandbox
    assert any(f"wrote outside its scratch folder: {outside}" in m for m in sandbox), sandbox
    assert any(f"read outside the package, the data and Python: {secret}" in m for m in sandbox), sandbox
    assert all("(at task2/predict.py:" in m for m in sandbox)
    assert ("NO-ENSEMBLE-TREE", "re-run (predict): xgboost was imported") in errors


@needs_sandbox
def test_forged_record_and_a_flood_are_tampering(p2, tiny_data):
    """The package finds the event pipe in the driver's argv, writes its own record first (declaring a layout
    that matches a checkpoint with a second model's tensor), then floods the pipe past its size limit: the
    forged line lacks the run's token and the flood cuts the stream, and both are errors."""
    from referee.verify import verify_package

    with open(p2 / "task2/predict.py", "a") as f:
        f.write("""

def _forge():
    import json, os
    argv = open("/proc/self/cmdline", "rb").read().split(b"\\0")
    at = next(i for i, a in enumerate(argv) if a.endswith(b"rerun_driver.py"))
    fd = int(argv[at + 1])
    os.write(fd, (json.dumps({"type": "record", "rc": 0, "declared_state": {}, "seq": 0}) + "\\n").encode())
    for _ in range(150):
        os.write(fd, b"x" * 65536)


_forge()
""")
    resign(p2)
    report = verify_package(p2, data=tiny_data, rerun="predict", timeout=120)
    errors = [(f.id, f.message) for f in report.findings if f.severity == "error"]
    tampered = [m for i, m in errors if i == "RERUN-SANDBOX" and "tampered with" in m]
    assert report.exit_code == 1
    assert any("without the run's token" in m for m in tampered), errors
    assert any("passed its size limit" in m for m in tampered), errors


@needs_sandbox
def test_host_unix_socket_and_fork_inside_the_rerun(p2, tiny_data, tmp_path):
    """A pathname UNIX socket the verifier's machine listens on (in a host folder) is not there inside the
    sandbox, and the attempt is reported; a fork is reported as a process the package started."""
    from referee.verify import verify_package

    path = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(60)
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    with open(p2 / "task2/predict.py", "a") as f:
        f.write(f"""

def _local():
    import os, socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect({str(path)!r})
        s.sendall(b"hello from the sandbox")
    except OSError:
        pass
    try:
        pid = os.fork()
    except OSError as e:
        print("fork refused:", e.errno)
    else:
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("fork ran")
    import subprocess
    try:
        subprocess.run(["true"])
        print("subprocess ran")
    except OSError as e:
        print("subprocess refused:", e.errno)


_local()
""")
    resign(p2)
    report = verify_package(p2, data=tiny_data, rerun="predict", timeout=120)
    server.close()
    assert accepted in ([], [None])
    sandbox = [f.message for f in report.findings if f.severity == "error" and f.id == "RERUN-SANDBOX"]
    assert any("a local socket outside the scratch folder" in m and str(path) in m for m in sandbox), sandbox
    assert any("started a process: os.fork" in m for m in sandbox), sandbox
    pred = report.rerun["predict"]
    assert pred["sandbox"]["mounts"]["covered"]
    if pred["seccomp"]["ok"]:  # the kernel refused the process itself, not only reported it
        assert "fork refused: 1" in pred["log_tail"] and "fork ran" not in pred["log_tail"], pred["log_tail"]
        assert "subprocess refused: 1" in pred["log_tail"], pred["log_tail"]


def _accept(server):
    try:
        conn, _ = server.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


def test_rerun_refused_without_isolation_unless_no_sandbox(pkg2, tiny_data, harness_cli, monkeypatch):
    from referee import rerun
    from referee.sandbox import plan as sandbox

    monkeypatch.setattr(sandbox, "probe", lambda: sandbox.Isolation(False, "unshare not installed", 0, None, None))
    code, out, err = harness_cli("verify", pkg2, "--data", tiny_data, "--rerun", "predict")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "offers no isolation (unshare not installed)" in err and "--no-sandbox" in err
    calls = []

    def fake_rerun(ctx, mode, **kw):
        calls.append(kw["use_sandbox"])
        return {"mode": mode, "predict": {"skipped": "not run in this test"}}

    monkeypatch.setattr(rerun, "run_rerun", fake_rerun)
    code, out, err = harness_cli("verify", pkg2, "--data", tiny_data, "--rerun", "predict", "--no-sandbox")
    assert calls == [False]
    assert "ran without isolation (--no-sandbox)" in out


def test_sandbox_init_never_remounts_outside_its_own_namespaces(monkeypatch, tmp_path):
    """Remounting read-only in the verifier's own mount namespace would change the whole machine: the
    set-up refuses before any mount call when it is not in namespaces of its own."""
    from referee.sandbox import sandbox_init

    calls = []
    monkeypatch.setattr(sandbox_init, "_mount", lambda *a: calls.append(a) or (_ for _ in ()).throw(
        AssertionError("mount attempted")))
    with pytest.raises(OSError, match="refusing to remount anything"):
        sandbox_init.apply_mounts(str(tmp_path), sandbox_init.namespaces())
    with pytest.raises(OSError, match="refusing to remount anything"):
        sandbox_init.apply_mounts(str(tmp_path), {})
    assert calls == []


def test_sandbox_data_roots_leave_the_truth_out(tiny_data):
    from referee.sandbox.plan import data_roots

    predict = data_roots(Path(tiny_data), "predict")
    assert predict == [str((Path(tiny_data) / "MicroLens_1M_x1").resolve())]
    full = data_roots(Path(tiny_data), "full")
    assert not any("oracle" in p for p in full) and any(p.endswith("item_feature.parquet") for p in full)
