"""Runs inside a re-run's sandbox, beside (never inside) the package copy; not imported by the harness.

    python -B -s rerun_driver.py EVENTS_FD TOKEN_FD SETTINGS.json MODE RUN_DIR -- MODULE ARG...

Makes the package copy the only source of `task1`, `task2` and `harness` (the copy first on sys.path;
editable-install finders that would map those names to another checkout are removed), installs an
audit hook (`sys.addaudithook`), then runs `python -m MODULE ARG...` in this process.

The audit hook sends one JSON line per event to EVENTS_FD as it happens (so what was sent stays sent
whatever the code does next): network sockets (`socket.*`), opens and file-system changes outside the
allowed folders (`open`, `os.*`), processes (`subprocess.Popen`, `os.system`, `os.exec`,
`os.posix_spawn`, `os.spawn`, `pty.spawn`), native code (`ctypes.dlopen`), unpickling
(`pickle.find_class`, `marshal.loads`), `exec`/`compile` called from the package's own files, and
imports of banned modules (or of task1 while Task 2 predicts), however the import was spelled. Each
event carries the package-relative stack (file:line) that led to it and `direct`, the package frame it
came from unless the import of another module came in between (a library's own import-time work, such
as importlib's marshal.loads, is dropped for the kinds judged by where they come from); the verifier
decides which of them are the competitor's code. Events are capped per kind and place.

MODE `predict` also records, with a global forward hook, every nn.Module that ran forward, and
afterwards rebuilds the declared class with the package's own `task2.registry.build_model` (`task2.model`'s
in packages of the earlier release): its state
layout (`declared_state`) and whether the checkpoint loads with `load_state_dict(strict=True)`. MODE
`plain` only runs the module. The final record goes to EVENTS_FD as a `record` line; the exit code is
the module's.

Every line this driver sends carries a secret token and a sequence number: the token is read from
TOKEN_FD, which is closed before any of the package's code runs, and the verifier gave it to no one
else. A line without it (the package writing to EVENTS_FD itself), a gap in the sequence, a line after
the record or a stream past its size limit is tampering, an error, never a pass. The hook is still
evidence, not the boundary: code in this process could read the token from this driver's frames
(which the allowlist review and the `sys._getframe`/`gc` events below make visible). The boundary is
the sandbox around this process (sandbox_init.py).
"""

import json
import os
import runpy
import sys

# Facts of the rules, given in SETTINGS (this file runs in the sandbox and imports nothing of the project, so
# it holds no copy): the banned modules (referee.rules.code_rules.BANNED) and the torch -> safetensors dtype
# names (core.challenge.TORCH_TO_SAFETENSORS). Set by main() before anything else runs.
BANNED = ()
TORCH_TO_ST = {}
MAX_PER_KIND = 20  # events sent per kind and package file:line (and ten times that per kind in all)
ATTRIBUTED = ("process", "native", "unpickle", "exec")  # judged by where they come from
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FS_CHANGES = {"os.remove": 0, "os.unlink": 0, "os.rmdir": 0, "os.mkdir": 0, "os.rename": 1, "os.replace": 1,
              "os.link": 1, "os.symlink": 1, "os.chmod": 0, "os.chown": 0, "os.truncate": 0, "os.utime": 0,
              "shutil.rmtree": 0, "shutil.copyfile": 1, "shutil.move": 1}
PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn", "os.fork",
                  "os.forkpty")
INTROSPECTION_EVENTS = ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                        "gc.get_referents", "object.__getattr__")  # judged by the frame that called them


def _isolate(package_root):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [package_root] + [p for p in sys.path
                                    if p and "__editable__" not in p and os.path.abspath(p) != here]
    sys.meta_path[:] = [f for f in sys.meta_path
                        if "__editable__" not in (getattr(f, "__module__", "") or "")
                        and "__editable__" not in type(f).__module__]
    sys.path_importer_cache.clear()


def _banned(name):
    return any(name == b or name.startswith(b + ".") for b in BANNED)


class Channel:
    """EVENTS_FD with the token and the next sequence number; the only writer of this driver's lines."""

    def __init__(self, fd, token):
        self._fd, self._token, self._seq = fd, token, 0
        self._write, self._dumps = os.write, json.dumps

    def send(self, doc):
        doc = dict(doc, seq=self._seq, token=self._token)
        self._seq += 1
        self._write(self._fd, (self._dumps(doc) + "\n").encode())


def forbid_processes(mode):
    """A seccomp filter (libseccomp, through ctypes), installed before the package's code runs and kept by
    everything it starts: no program can be executed in any mode (execve and execveat fail with EPERM), and
    in `predict` mode no process can be created either (fork, vfork and clone without CLONE_THREAD fail;
    clone3 answers ENOSYS so that threads are made with clone, which is filtered by its flags). Threads stay
    allowed. Returns what was installed, or why nothing was."""
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        return {"ok": False, "note": f"libseccomp not found ({e})"}

    class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]

    allow, masked_eq, clone_thread = 0x7FFF0000, 7, 0x00010000
    errno_of = {"EPERM": 0x00050000 | 1, "ENOSYS": 0x00050000 | 38}
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    rules = [("execve", "EPERM", None), ("execveat", "EPERM", None)]
    if mode == "predict":
        rules += [("fork", "EPERM", None), ("vfork", "EPERM", None), ("clone3", "ENOSYS", None),
                  ("clone", "EPERM", ArgCmp(0, masked_eq, clone_thread, 0))]
    ctx = lib.seccomp_init(allow)
    if not ctx:
        return {"ok": False, "note": "seccomp_init failed"}
    try:
        done = []
        for name, err, cmp in rules:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                continue  # not a system call on this architecture
            rc = lib.seccomp_rule_add_array(ctx, errno_of[err], nr, 1 if cmp else 0,
                                            ctypes.byref(cmp) if cmp else None)
            if rc != 0:
                return {"ok": False, "note": f"seccomp_rule_add({name}) failed: {-rc}"}
            done.append(name)
        rc = lib.seccomp_load(ctx)
        if rc != 0:
            return {"ok": False, "note": f"seccomp_load failed: {-rc}"}
    finally:
        lib.seccomp_release(ctx)
    return {"ok": True, "denied": done}


def install_hook(channel, settings, mode):
    """The audit hook; every name it uses is bound here, before the package's code runs."""
    emit = channel.send
    dumps = json.dumps
    getframe = sys._getframe
    fspath = os.fspath
    abspath = os.path.abspath
    root = os.path.realpath(settings["package_root"]) + os.sep
    reads = tuple(os.path.realpath(p).rstrip(os.sep) + os.sep for p in settings["read"]) + tuple(
        p + os.sep for p in settings["read"])
    writes = tuple(os.path.realpath(p).rstrip(os.sep) + os.sep for p in settings["write"])
    files = frozenset(settings["devices"])
    counts = {}
    busy = []
    predict = mode == "predict"

    me = os.path.abspath(__file__)

    def frames():
        """Frames from the audited call outwards, this driver's own skipped."""
        f = getframe(1)
        while f is not None and f.f_code.co_filename == me:
            f = f.f_back
        return f

    def send(kind, what, caller_only=False):
        if counts.get(kind, 0) >= MAX_PER_KIND * 10:
            return
        f = frames()
        where = []
        direct = None  # the package frame the event came from, unless an import of another module came between
        if caller_only:  # exec/compile: only the frame that called it decides
            name = f.f_code.co_filename if f is not None else ""
            if not name.startswith(root):
                return
            where = [f"{name[len(root):]}:{f.f_lineno}"]
            direct = where[0]
        else:
            through_import = False
            while f is not None and len(where) < 12:
                name = f.f_code.co_filename
                if name.startswith(root):
                    where.append(f"{name[len(root):]}:{f.f_lineno}")
                    if direct is None and not through_import:
                        direct = where[-1]
                elif name.startswith("<frozen importlib"):
                    through_import = through_import or not where
                f = f.f_back
        if direct is None and kind in ATTRIBUTED:
            return  # a library's own work while being imported: not the package's doing
        key = (kind, direct)
        if counts.get(key, 0) >= MAX_PER_KIND:
            return  # capped per kind and per place, so that no place can crowd out another
        counts[key] = counts.get(key, 0) + 1
        counts[kind] = counts.get(kind, 0) + 1
        try:
            emit({"type": "event", "kind": kind, "what": str(what)[:300], "stack": where, "direct": direct})
        except Exception:  # noqa: BLE001 - a closed pipe must not change the run
            pass

    def path_of(value):
        if isinstance(value, int):
            return None
        try:
            p = fspath(value)
        except TypeError:
            return None
        if isinstance(p, bytes):
            p = p.decode("utf-8", "surrogateescape")
        return abspath(p)

    def check_path(value, writing):
        p = path_of(value)
        if p is None or p in files:
            return
        if writing:
            if not (p + os.sep).startswith(writes):
                send("write", p)
        elif not (p + os.sep).startswith(reads) and not (p + os.sep).startswith(writes):
            send("read", p)

    def hook(event, args):
        if busy:
            return
        busy.append(1)
        try:
            if event == "open":
                path, mode_, flags = args
                if isinstance(mode_, str):
                    writing = any(c in mode_ for c in "wax+")
                else:
                    writing = bool((flags or 0) & WRITE_FLAGS)
                check_path(path, writing)
            elif event in FS_CHANGES:
                check_path(args[0], True)
                if FS_CHANGES[event] and len(args) > 1:
                    check_path(args[1], True)
            elif event in ("os.listdir", "os.scandir"):
                check_path(args[0] if args and args[0] is not None else ".", False)
            elif event.startswith("socket."):
                if event == "socket.__new__":
                    family = args[1] if len(args) > 1 else None
                    if family != 1:  # AF_UNIX (multiprocessing's pipes) stays local
                        send("socket", f"socket(family={family})")
                elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
                    addr = args[1] if len(args) > 1 else None
                    # a path is an AF_UNIX address; no address on an AF_UNIX socket is a connected local pair
                    # (multiprocessing passes DataLoader workers' tensors over one with sendmsg)
                    local_pair = addr is None and getattr(args[0] if args else None, "family", None) == 1
                    if isinstance(addr, (str, bytes)):  # AF_UNIX by path: only the scratch folder's own
                        p = path_of(addr)
                        if p is not None and not p.startswith("\0") and not (p + os.sep).startswith(writes):
                            send("socket", f"{event[7:]} {addr!r} (a local socket outside the scratch folder)")
                    elif not local_pair:
                        send("socket", f"{event[7:]} {addr!r}")
                elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                               "socket.gethostbyaddr", "socket.getnameinfo"):
                    send("socket", f"{event[7:]} {args[0]!r}")
            elif event.startswith(PROCESS_EVENTS):
                send("process", f"{event} {' '.join(map(str, args))[:200]}")
            elif event == "ctypes.dlopen":
                send("native", f"ctypes.dlopen {args[0]!r}")
            elif event in ("pickle.find_class", "marshal.loads", "marshal.load"):
                send("unpickle", f"{event} {args[0]!r}.{args[1]!r}" if event == "pickle.find_class" else event)
            elif event in ("exec", "compile"):
                what = getattr(args[0], "co_filename", None) if event == "exec" else args[1]
                send("exec", f"{event} {what!r}", caller_only=True)
            elif event == "import":
                name = args[0]
                if _banned(name):
                    send("import", name)
                elif predict and (name == "task1" or name.startswith("task1.")):
                    send("import", name)
            elif event in INTROSPECTION_EVENTS:
                send("introspect", event, caller_only=True)
            elif event == "sys.addaudithook":
                send("process", "sys.addaudithook (another audit hook)")
        except Exception:  # noqa: BLE001 - the hook must never break the run it watches
            pass
        finally:
            busy.pop()

    sys.addaudithook(hook)


def _qual(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _origins(package_root):
    root = os.path.realpath(package_root)
    out = {}
    for name in ("task1", "task2", "core", "harness"):
        mod = sys.modules.get(name)
        if mod is not None:
            where = os.path.realpath(getattr(mod, "__file__", "") or "")
            out[name] = {"file": where, "inside": where.startswith(root + os.sep)}
    return out


def main():
    fd, token_fd = int(sys.argv[1]), int(sys.argv[2])
    settings_path, mode, run_dir = sys.argv[3], sys.argv[4], sys.argv[5]
    if sys.argv[6] != "--":
        raise SystemExit("usage: rerun_driver.py EVENTS_FD TOKEN_FD SETTINGS MODE RUN_DIR -- MODULE ARG...")
    module, args = sys.argv[7], sys.argv[8:]
    with os.fdopen(token_fd, "rb") as f:  # closed before any of the package's code runs
        channel = Channel(fd, f.read(256).decode("ascii", "replace").strip())
    with open(settings_path, encoding="utf-8") as f:
        settings = json.load(f)
    global BANNED, TORCH_TO_ST
    BANNED, TORCH_TO_ST = tuple(settings["banned"]), dict(settings["dtype_codes"])
    package_root = settings["package_root"]
    _isolate(package_root)
    record = {"type": "record", "mode": mode, "module": module}
    seen = {}
    handle = None
    if mode == "predict":
        import torch

        def hook(mod, _inputs, _output):
            seen.setdefault(id(mod), mod)

        handle = torch.nn.modules.module.register_module_forward_hook(hook)
    before = set(sys.modules)
    record["seccomp"] = forbid_processes(mode)
    install_hook(channel, settings, mode)
    sys.argv = [module, *args]
    rc = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001 - reported as the run's failure
        import traceback

        traceback.print_exc()
        record["exception"] = f"{type(e).__name__}: {e}"[:400]
        rc = 1
    if handle is not None:
        handle.remove()
    record["rc"] = rc
    record["origins"] = _origins(package_root)
    record["imports"] = sorted(set(sys.modules) - before)
    record["banned_loaded"] = sorted(m for m in sys.modules if _banned(m))
    if mode == "predict":
        record["forward"], record["strict_load"], record["declared_state"] = _inspect(seen, run_dir)
    channel.send(record)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc if isinstance(rc, int) and 0 <= rc < 256 else 1)


def _inspect(seen, run_dir):
    mods = list(seen.values())
    inner = set()
    for m in mods:
        for c in m.modules():
            if c is not m:
                inner.add(id(c))
    roots = [m for m in mods if id(m) not in inner]
    forward = {"modules": sorted({_qual(m) for m in mods}), "roots": sorted(_qual(m) for m in roots),
               "declared_class": None, "outside_declared": []}
    strict = {"ok": False, "message": "not attempted"}
    declared_state = None
    try:
        with open(os.path.join(run_dir, "model_args.json"), encoding="utf-8") as f:
            args = json.load(f)
        try:
            from task2.registry import MODEL_CLASSES, build_model
        except ImportError:  # packages of the earlier release kept them in task2/model.py
            from task2.model import MODEL_CLASSES, build_model

        declared = MODEL_CLASSES[args["model_class"]][0]
        forward["declared_class"] = f"{declared.__module__}.{declared.__qualname__}"
        allowed = set()
        for r in roots:
            if type(r) is declared:
                allowed |= {id(c) for c in r.modules()}
        forward["outside_declared"] = sorted({_qual(m) for m in mods if id(m) not in allowed})
        from safetensors.torch import load_file

        model = build_model(args)
        declared_state = {k: [TORCH_TO_ST.get(str(v.dtype).replace("torch.", ""), str(v.dtype)), list(v.shape)]
                          for k, v in model.state_dict().items()}
        model.load_state_dict(load_file(os.path.join(run_dir, "model.safetensors")), strict=True)
        strict = {"ok": True, "message": f"{len(model.state_dict())} tensors loaded strictly into "
                                         f"{args['model_class']}"}
    except Exception as e:  # the record says what failed; the verifier turns it into a finding
        strict = {"ok": False, "message": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
    return forward, strict, declared_state


if __name__ == "__main__":
    main()
