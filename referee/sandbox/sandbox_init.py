"""The first process inside a re-run's sandbox: lock the process down, then exec the re-run driver.

    python -I -B sandbox_init.py CONFIG.json

Runs beside (never inside) the package copy and is not imported by the harness. The verifier starts
it under `unshare --user --map-root-user --net --mount --pid --fork --kill-child --mount-proc` when
the machine allows (see sandbox.py), so it begins as root of fresh user, network, mount and PID
namespaces: no network interface but a loopback that is down, no other process visible. In order:

1. mounts (only inside a mount namespace of its own, which it checks): the scratch folder is
   bind-mounted onto itself; a fresh /dev holds only the configured device files (no disks: the
   process is uid 0 of the machine without capabilities, so file permissions alone would let it read
   a disk) and a private /dev/shm; the configured `hide` paths are covered (the ground truth, other
   teams' packages, /etc/shadow); then every other mount is remounted read-only, so the only writable
   places are the scratch folder and the private /dev/shm;
2. resource limits (setrlimit): CPU seconds, address space, processes, file size, open files, no cores;
3. capabilities: the bounding set is emptied, the securebits are locked so that uid 0 regains nothing
   on exec, every capability is dropped, and no_new_privs is set; the package's code can no longer
   undo the mounts;
4. Landlock (when the kernel has it): reads only below the configured read roots, writes only below
   the write roots (the scratch folder, the private /dev/shm) and to a few device files; with ABI 4
   and later, every TCP bind and connect is refused too; with ABI 6 and later, signals and abstract
   UNIX sockets cannot reach outside the sandbox;
5. exec of the configured command (the re-run driver), which inherits all of the above.

Each step's outcome goes to the verifier as one JSON line on the events file descriptor. A step the
configuration requires that fails ends the process with exit code 97: the sandbox fails closed.

CONFIG (JSON): {"events_fd": int, "host_ns": {"user": .., "mnt": ..} (the verifier's), "mount": bool,
"landlock": bool, "capabilities": bool, "scratch": path, "read": [paths], "write": [paths],
"devices": [paths], "hide": [paths], "rlimits": {"RLIMIT_CPU": int, ...}, "exec": [argv]}
"""

import ctypes
import json
import os
import resource
import sys

SETUP_FAILED = 97

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}

# prctl(2)
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 24, 28, 38
SECURE_ALL_LOCKED = 0x2F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and their locks
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every architecture
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

libc = ctypes.CDLL(None, use_errno=True)


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(rc, what):
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    rc = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return rc if rc > 0 else 0


def fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def apply_landlock(read, write, devices) -> dict:
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    handled = fs_rights(abi)
    attr = RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                       SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _check(libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
                     "landlock_create_ruleset")
    file_read = FS_EXECUTE | FS_READ_FILE
    file_write = FS_WRITE_FILE | (FS_TRUNCATE if abi >= 3 else 0)
    added = []

    def add(path, access):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # an absent root allows nothing
        try:
            if not os.path.isdir(path):
                access &= file_read | file_write | (FS_IOCTL_DEV if abi >= 5 else 0)
            rule = PathBeneathAttr(access & handled, fd)
            _check(libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule {path}")
            added.append(path)
        finally:
            os.close(fd)

    for path in read:
        add(path, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR)
    for path in write:
        add(path, handled)
    for path in devices:
        add(path, FS_READ_FILE | file_write | (FS_IOCTL_DEV if abi >= 5 else 0))
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    return {"abi": abi, "rules": len(added), "tcp_denied": abi >= 4, "scoped": abi >= 6}


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _mounts():
    """(mount point, per-mount flags) of every mount, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode("utf-8", "surrogateescape").decode("unicode_escape").encode(
                "latin-1").decode("utf-8", "surrogateescape")
            flags = 0
            for opt in fields[5].split(","):
                flags |= OPTION_FLAGS.get(opt, 0)
            out.append((point, flags))
    return out


def namespaces() -> dict:
    return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("user", "mnt", "net", "pid")}


def private_dev(devices) -> None:
    """A fresh /dev holding only `devices` (bind-mounted from the real ones), a private /dev/shm and the
    usual fd links: the machine's disks and other devices are not even visible."""
    fds = {}
    for dev in devices:
        try:
            fds[dev] = os.open(dev, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for dev, fd in fds.items():
        os.makedirs(os.path.dirname(dev), exist_ok=True)
        os.close(os.open(dev, os.O_CREAT | os.O_WRONLY, 0o666))
        _mount(f"/proc/self/fd/{fd}", dev, None, MS_BIND)
        os.close(fd)
    os.mkdir("/dev/shm")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=1g,mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")


def cover_folders(cover, roots) -> list[str]:
    """An empty tmpfs over each folder of `cover` (the host's /tmp, /run, /home, ...: their sockets, other
    users' files), with only the `roots` that lie inside it bound back at their own paths."""
    covered = []
    for top in cover:
        if not os.path.isdir(top) or os.path.islink(top):
            continue  # absent, or a link (/var/run -> /run) to a folder covered on its own
        top = top.rstrip("/")
        if any(top == r or top.startswith(r.rstrip("/") + "/") for r in roots):
            continue  # read as a whole (a root is the folder or holds it)
        inside = sorted({r for r in roots if r.startswith(top + "/") and os.path.exists(r)})
        outer = [r for r in inside if not any(o != r and r.startswith(o + "/") for o in inside)]
        fds = {r: os.open(r, os.O_PATH | os.O_CLOEXEC) for r in outer}
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for r, fd in fds.items():
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(r, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(r), exist_ok=True)
                os.close(os.open(r, os.O_CREAT | os.O_WRONLY, 0o644))
            _mount(f"/proc/self/fd/{fd}", r, None, MS_BIND | MS_REC)
            os.close(fd)
        covered.append(top)
    return covered


def apply_mounts(scratch: str, host_ns: dict, hide=(), devices=(), cover=(), roots=()) -> dict:
    """Scratch stays writable, /dev/shm becomes private, the `cover` folders are emptied but for the `roots`
    inside them, the `hide` paths are covered (an empty tmpfs over a folder, /dev/null over a file), every
    other mount read-only.

    Refuses unless this process is in a user and mount namespace of its own (not the verifier's,
    `host_ns`): remounting in the verifier's namespaces would change the whole machine's mounts.
    """
    mine = namespaces()
    shared = [k for k in ("user", "mnt") if not host_ns.get(k) or mine[k] == host_ns[k]]
    if shared:
        raise OSError(f"not in a {' and '.join(shared)} namespace of its own: refusing to remount anything")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(scratch, scratch, None, MS_BIND | MS_REC)
    keep = {scratch, "/dev/shm"}
    covered = cover_folders(cover, roots)
    private_dev(devices)
    hidden = []
    for path in hide:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
        else:
            continue
        hidden.append(path)
    readonly, failed = 0, []
    for point, flags in _mounts():
        if point in keep:
            continue
        if any(point.startswith(top + "/") for top in covered) and not os.path.lexists(point):
            continue  # a mount of the host's under a covered folder: no longer reachable
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
            readonly += 1
        except OSError as e:
            failed.append(f"{point}: {e.strerror}")
    # a mount left writable outside the scratch folder is a hole; below / only pseudo-filesystems may fail
    holes = [f for f in failed if not f.startswith(("/proc", "/sys", "/dev"))]
    if holes:
        raise OSError(f"could not make these mounts read-only: {'; '.join(holes[:5])}")
    return {"readonly": readonly, "writable": sorted(keep), "hidden": hidden, "covered": covered,
            "not_remounted": failed[:10]}


def apply_rlimits(limits: dict) -> dict:
    done = {}
    for name, value in limits.items():
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        value = int(value)
        new_hard = value if hard == resource.RLIM_INFINITY or value < hard else hard
        resource.setrlimit(which, (min(value, new_hard), new_hard))
        done[name] = min(value, new_hard)
    return done


def drop_capabilities() -> dict:
    last = 40
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            last = int(f.read().strip())
    except (OSError, ValueError):
        pass
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM without CAP_SETPCAP: then there is nothing to drop
    securebits = libc.prctl(PR_SET_SECUREBITS, SECURE_ALL_LOCKED, 0, 0, 0) == 0
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    with open("/proc/self/status", encoding="ascii") as f:
        eff = next((line.split()[1] for line in f if line.startswith("CapEff:")), "?")
    if eff.strip("0") not in ("",):
        raise OSError(f"capabilities still effective after dropping them: {eff}")
    return {"effective": eff, "securebits_locked": securebits}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    fd = cfg["events_fd"]

    def send(doc):
        os.write(fd, (json.dumps(doc) + "\n").encode())

    report = {"type": "sandbox", "pid": os.getpid(), "uid": os.getuid()}
    step = "start"
    try:
        if cfg.get("mount"):
            step = "mounts"
            report["mounts"] = apply_mounts(cfg["scratch"], cfg.get("host_ns") or {}, cfg.get("hide") or [],
                                            cfg.get("devices") or [], cfg.get("cover") or [], cfg.get("roots") or [])
        step = "rlimits"
        report["rlimits"] = apply_rlimits(cfg.get("rlimits", {}))
        if cfg.get("capabilities", True):
            step = "capabilities"
            report["capabilities"] = drop_capabilities()
        if cfg.get("landlock"):
            step = "landlock"
            report["landlock"] = apply_landlock(cfg.get("read", []), cfg.get("write", []), cfg.get("devices", []))
    except Exception as e:  # noqa: BLE001 - any failure closes the sandbox; the verifier reports it
        report.update(ok=False, failed_step=step, error=f"{type(e).__name__}: {e}"[:500])
        send(report)
        os._exit(SETUP_FAILED)
    report["ok"] = True
    send(report)
    argv = cfg["exec"]
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
