"""How `harness verify --rerun` isolates the package's code: what the machine supports, and the command.

Mechanisms, chosen by what the machine supports (`probe`), all standard Linux:

- user, network, mount and PID namespaces via util-linux `unshare` (no privileges needed where
  unprivileged user namespaces are allowed): no network at all (a loopback that is down), a mount
  namespace where everything but the scratch folder is remounted read-only, no other process
  visible, and every process of the re-run killed with it;
- Landlock (Linux 5.13+), applied inside: reads only below the package copy, the data, the Python
  installation and the system's library folders; writes only to the scratch folder; with ABI 4+
  no TCP bind or connect; with ABI 6+ no signals or abstract sockets out of the sandbox;
- resource limits: CPU seconds, address space (CPU re-runs), file size, open files, no core dumps,
  and processes (RLIMIT_NPROC, which Linux does not apply to root, so a pids cgroup as well where
  the verifier may create one);
- a scrubbed environment: a temporary HOME and TMPDIR inside the scratch folder, offline flags, and
  nothing else of the verifier's environment (no tokens, no proxies, no PYTHONPATH).

bubblewrap is detected and reported but not needed: unshare and Landlock give the same isolation.
Isolation counts as available when the namespaces work (the network is then cut and writes are
confined whatever Landlock offers); without it `--rerun` refuses unless `--no-sandbox`, which keeps
the environment scrubbing, the resource limits and the audit hook but isolates nothing.

`sandbox_init.py` (run first inside the namespaces) applies the mounts, limits, capability drop and
Landlock, then execs the re-run driver; see its docstring.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.seeding import CUBLAS_WORKSPACE

UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child",
           "--mount-proc"]
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/proc", "/sys", "/opt")
# /etc is readable entry by entry, less these; /dev only as the DEVICES below. Inside the namespaces the
# package's code is uid 0 of the machine without capabilities: file permissions alone would not stop it.
SENSITIVE_ETC = ("shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl", "pki",
                 "security", "krb5.keytab", "machine-id", "credstore", "credstore.encrypted", "wireguard")
SENSITIVE = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/ssh")
# emptied inside the sandbox but for the folders the re-run reads or writes: the host's sockets (/run, /tmp),
# other users' homes and scratch space are not there to connect to or read
COVER = ("/tmp", "/var/tmp", "/run", "/var/run", "/home", "/root", "/mnt", "/media", "/srv", "/var/lib")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
CUDA_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps/*", "/dev/dri/*")
PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
MAX_PROCESSES = 512  # threads count too (torch starts one per core)


@dataclass(frozen=True)
class Isolation:
    """What the machine offers (see the module docstring)."""

    namespaces: bool
    namespaces_note: str
    landlock_abi: int
    bwrap: str | None
    pids_cgroup: str | None

    @property
    def available(self) -> bool:
        return self.namespaces

    def describe(self, enabled: bool = True) -> str:
        if not enabled:
            return ("none (--no-sandbox): the package's code ran with the verifier's user, network and files; "
                    "scrubbed environment, resource limits and the audit hook only")
        if not self.available:
            return f"none available ({self.namespaces_note})"
        parts = ["user+network+mount+PID namespaces (unshare): no network, everything read-only but the scratch "
                 "folder"]
        if self.landlock_abi:
            parts.append(f"Landlock ABI {self.landlock_abi}: reads confined to the package, the data and Python, "
                         "writes to the scratch folder" + (", TCP denied" if self.landlock_abi >= 4 else ""))
        else:
            parts.append("no Landlock (reads are not confined)")
        parts.append("pids cgroup" if self.pids_cgroup else "RLIMIT_NPROC (not applied to root)")
        if self.bwrap:
            parts.append("bubblewrap present, not needed")
        return "; ".join(parts)


def _landlock_abi() -> int:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        return rc if rc > 0 else 0
    except (OSError, AttributeError):
        return 0


def _pids_cgroup_root() -> str | None:
    """A cgroup folder where the verifier may create a child with pids.max (v1 or v2), or None."""
    cands = ["/sys/fs/cgroup/pids"]
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            for line in f:
                if line.startswith("0::"):
                    cands.append("/sys/fs/cgroup" + line.strip()[3:])
    except OSError:
        pass
    for root in cands:
        probe = os.path.join(root, f"mmctr-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        try:
            if os.path.isfile(os.path.join(probe, "pids.max")):
                return root
        finally:
            try:
                os.rmdir(probe)
            except OSError:
                pass
    return None


@functools.lru_cache(maxsize=1)
def probe() -> Isolation:
    """What isolation this machine supports (cached for the process)."""
    note = "unshare not installed"
    ok = False
    if shutil.which("unshare"):
        try:
            proc = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
            ok = proc.returncode == 0
            note = "unshare works" if ok else f"unshare failed: {' '.join(proc.stderr.split())[:160]}"
        except (OSError, subprocess.SubprocessError) as e:
            note = f"unshare failed: {e}"
    return Isolation(ok, note, _landlock_abi(), shutil.which("bwrap"), _pids_cgroup_root())


@dataclass
class Limits:
    cpu_seconds: int
    memory_bytes: int | None  # address space; None on CUDA (its address-space reservations break it)
    processes: int = MAX_PROCESSES
    file_bytes: int = 16 * 1024**3
    open_files: int = 4096

    def rlimits(self) -> dict:
        out = {"RLIMIT_CPU": self.cpu_seconds, "RLIMIT_NPROC": self.processes, "RLIMIT_FSIZE": self.file_bytes,
               "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}
        if self.memory_bytes:
            out["RLIMIT_AS"] = self.memory_bytes
        return out

    def describe(self) -> str:
        mem = (f"{self.memory_bytes / 1024**3:.0f} GiB address space" if self.memory_bytes
               else "memory not limited (CUDA)")
        return (f"{self.cpu_seconds:,} CPU s, {mem}, {self.processes} processes/threads, "
                f"{self.file_bytes / 1024**3:.0f} GiB per file, {self.open_files} open files")


def default_limits(timeout: float, device: str) -> Limits:
    cpus = os.cpu_count() or 1
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 16 * 1024**3
    memory = None if device.startswith("cuda") else max(4 * 1024**3, int(ram * 0.75))
    return Limits(cpu_seconds=int(max(60.0, timeout) * cpus) + 60, memory_bytes=memory)


def python_roots() -> list[str]:
    """Folders the interpreter and its packages are read from."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    return sorted(os.path.realpath(r) for r in roots if r and os.path.isdir(r))


def etc_roots() -> list[str]:
    """/etc's entries but the sensitive ones (what the loader, locale and time zone code read)."""
    try:
        names = sorted(os.listdir("/etc"))
    except OSError:
        return []
    out = [f"/etc/{n}" for n in names if n not in SENSITIVE_ETC]
    return out + [p for p in ("/etc/ssl/certs",) if os.path.isdir(p)]  # public CA certificates only


def hidden_paths(read_roots: list[str], extra=()) -> list[str]:
    """What the mounts cover inside the sandbox: the sensitive system paths and `extra` (the ground truth,
    the submissions), less any that holds something the re-run must read (a venv under /root, say)."""
    out = []
    for p in [*SENSITIVE, *map(str, extra)]:
        rp = os.path.realpath(p)
        if os.path.exists(rp) and not any(os.path.realpath(r) == rp or os.path.realpath(r).startswith(rp + os.sep)
                                          for r in read_roots):
            out.append(rp)
    return sorted(set(out))


def devices(device: str) -> list[str]:
    out = [d for d in DEVICES if os.path.exists(d)]
    if device.startswith("cuda"):
        for pattern in CUDA_DEVICES:
            out += sorted(glob.glob(pattern))
    return out


@dataclass
class Plan:
    """Everything one sandboxed run needs; `config()` is what sandbox_init.py reads."""

    enabled: bool
    iso: Isolation
    scratch: str
    read: list[str]
    write: list[str]
    devices: list[str]
    limits: Limits
    hide: list[str] = field(default_factory=list)
    cover: list[str] = field(default_factory=lambda: list(COVER))

    def config(self, events_fd: int, argv: list[str]) -> dict:
        return {
            "events_fd": events_fd,
            "host_ns": _namespaces(),
            "capabilities": self.enabled or sys.platform.startswith("linux"),
            "mount": self.enabled,
            "landlock": self.enabled and self.iso.landlock_abi > 0,
            "scratch": self.scratch,
            "read": self.read,
            "write": self.write + (["/dev/shm"] if self.enabled else []),
            "devices": self.devices,
            "hide": self.hide,
            "cover": list(dict.fromkeys(os.path.realpath(p) for p in self.cover)),
            "roots": sorted({os.path.realpath(p) for p in [*self.read, *self.write]}),
            "rlimits": self.limits.rlimits(),
            "exec": argv,
        }

    def command(self, init: str, config: str) -> list[str]:
        base = [sys.executable, "-I", "-B", init, config]
        return [*UNSHARE, *base] if self.enabled else base

    def describe(self) -> str:
        return f"{self.iso.describe(self.enabled)}; limits: {self.limits.describe()}"


def _namespaces() -> dict:
    try:
        return {k: os.readlink(f"/proc/self/ns/{k}") for k in ("user", "mnt", "net", "pid")}
    except OSError:
        return {}


class PidsCgroup:
    """A child pids cgroup with pids.max for one run (a no-op where none can be created)."""

    def __init__(self, root: str | None, limit: int, tag: str):
        self.path = None
        if root:
            path = os.path.join(root, f"mmctr-rerun-{os.getpid()}-{tag}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w", encoding="ascii") as f:
                    f.write(str(limit))
                self.path = path
            except OSError:
                self.path = None

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the child before exec)."""
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(os.getpid()))

    def close(self) -> None:
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    return
                except OSError:
                    import time

                    time.sleep(0.1)


def data_roots(data: Path, mode: str) -> list[str]:
    """What of the data root a re-run may read: the split files (MicroLens_1M_x1/) and, for a full re-run,
    the item files Task 1 reads; never anything else there (oracle/, a ground truth)."""
    from core.validate import DATA_FILES, IMAGES, DATASET_DIR

    data = data.resolve()
    out = [str(data / DATASET_DIR)]
    if mode == "full":
        out += [str(data / rel) for rel in DATA_FILES if "/" not in rel] + [str(data / IMAGES)]
    return [p for p in out if os.path.exists(p)]


def cache_roots() -> list[str]:
    """Model caches a full re-run's Task 1 reads encoders from (read-only)."""
    home = Path.home()
    cands = [os.environ.get("HF_HOME"), os.environ.get("HF_HUB_CACHE"), os.environ.get("TORCH_HOME"),
             str(home / ".cache" / "huggingface"), str(home / ".cache" / "torch")]
    return sorted({os.path.realpath(c) for c in cands if c and os.path.isdir(c)})


def scrubbed_env(scratch: Path, seed: str, extra: dict | None = None) -> dict:
    """The re-run's whole environment: nothing of the verifier's but thread counts and devices."""
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update({
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        "HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp"), "XDG_CACHE_HOME": str(scratch / "cache"),
        "MPLCONFIGDIR": str(scratch / "cache" / "matplotlib"), "PYTHONHASHSEED": seed,
        "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "TQDM_DISABLE": "1",
    })
    env.update(extra or {})
    return env
