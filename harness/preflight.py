"""The preflight: everything that could make a run fail late, checked in seconds before any stage starts.

`./reproduce.sh` runs it first, and `harness preflight` runs it alone with the same options. A real run
costs hours of GPU time (91,717 covers through CLIP ViT-L/14, then Task 2 on 3.6 M rows), so what can
be known up front is checked up front:

- device: `--device cuda` on a machine whose torch sees no CUDA device;
- data: the files the chosen stages read are there (core.validate.required_files); every parquet
  file's footer is readable and has the official columns and dtypes (an empty frame with the footer's
  schema goes through the same pandera contract as `harness validate`); row counts agree (item_info
  holds N + 1 rows, item_feature and item_emb N); the cover folder is listed once (names and sizes)
  and judged by the one cover policy (core/covers.py). The full validate still runs as a stage;
- known data: when the row counts are the official release's, the sha256 of train.parquet and
  item_feature.parquet against the published values (docs/challenge.md, section 1); a mismatch is a
  warning that names the file, and the result goes into results.json;
- models (Tracks 1 and 3): each Task 1 model resolvable without loading it (a packaged model's
  package, a folder with config.json, weights and its processor or tokenizer, a hub id in the local
  cache when offline) and its licence known and open (task1.models.model_license: the stated SPDX id,
  the profiles' models, the hub card, a folder's README.md);
- output: the run folder writable, and the free disk against an estimate of what the run writes
  (generated data, Task 1 caches, item_info, checkpoint, prediction, submission, model downloads),
  less what an earlier run already left there;
- GPU (on CUDA): total and free memory against the hardware profile's needs; the compute capability
  and the autocast dtype Task 2 will use (bf16 only at 8.0 or more).

Each failure is one line that names the problem and the fix. Exit codes: 0 (warnings allowed), 1 for
data or model problems, 2 for usage and environment problems (device, output folder, disk, GPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.challenge import DATASET_DIR, EMB_DIM
from core.errors import EXIT_FINDINGS, EXIT_USAGE
from harness.options import RunOptions

# the official release's row counts (docs/challenge.md, section 1)
OFFICIAL_ROWS = {f"{DATASET_DIR}/train.parquet": 3_600_000, f"{DATASET_DIR}/valid.parquet": 10_000, f"{DATASET_DIR}/test.parquet": 379_142,
                 f"{DATASET_DIR}/item_info.parquet": 91_718, "item_feature.parquet": 91_717}
# the sha256 values the organizers published (docs/challenge.md, section 1)
PUBLISHED_SHA256 = {
    f"{DATASET_DIR}/train.parquet": "182fba831484d931e3943557cdd1b791861b2f921d0a7ff66bb34d492be7d5b1",
    "item_feature.parquet": "a63d8cbe090a79ee18bdb51a4146a4205339cb4b3b81bcae26035c17a322fc65",
}
SYNTH_BYTES = {"tiny": 5e6, "demo": 38e6, "full": 1.15e9}  # `harness synth` output, measured (seed 0)
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER = ("tokenizer.json", "sentencepiece.bpe.model", "vocab.txt", "spiece.model", "tokenizer.model")
DOWNLOAD_BYTES = {"openai/clip-vit-large-patch14": 1.71e9, "intfloat/multilingual-e5-base": 1.11e9}
GIB = 2**30


@dataclass
class Check:
    """One line of the report: `area` (device, data, known_data, models, output, gpu), ok / warning / error."""

    area: str
    status: str
    message: str
    path: str = ""
    exit_code: int = 0

    def line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"[{self.area}] {where}{' '.join(self.message.split())}"


@dataclass
class Report:
    checks: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self, area: str, message: str, path="") -> None:
        self.checks.append(Check(area, "ok", message, str(path)))

    def warn(self, area: str, message: str, path="") -> None:
        self.checks.append(Check(area, "warning", message, str(path)))

    def fail(self, area: str, message: str, path="", code: int = EXIT_FINDINGS) -> None:
        self.checks.append(Check(area, "error", message, str(path), code))

    @property
    def failures(self) -> list:
        return [c for c in self.checks if c.status == "error"]

    @property
    def warnings(self) -> list:
        return [c for c in self.checks if c.status == "warning"]

    @property
    def exit_code(self) -> int:
        return max((c.exit_code for c in self.failures), default=0)

    def to_dict(self) -> dict:
        return {"ok": not self.failures, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
                "checks": [asdict(c) for c in self.checks], "facts": self.facts}


# ---------------------------------------------------------------------------------------------
# Device and GPU


def check_device(o: RunOptions, report: Report) -> None:
    import torch

    cuda = torch.cuda.is_available()
    report.facts["device"] = {"requested": o.device, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                              "cuda_available": cuda}
    if o.device == "cuda" and not cuda:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        report.fail("device", f"--device cuda, but torch {torch.__version__} ({build}) sees no CUDA device; "
                    "pass --device cpu, or run on a machine with an NVIDIA GPU and its driver", code=EXIT_USAGE)
    else:
        report.ok("device", o.device)


def stage_needs(o: RunOptions, report: Report, hardware: dict, models: list, task1_overrides: dict) -> list:
    """Each GPU stage's estimated peak memory (harness.gpu_need), from the models, batches and dtypes."""
    from harness.gpu_need import din_need, encoder_need, train_need
    from harness.worlds import SCALES
    from task1.config import make_config
    from task2.train import load_train_config

    needs = []
    if o.track != 2 and models:
        try:
            cfg = make_config(o.profile, task1_overrides)
        except Exception:  # noqa: BLE001 - check_models reports a bad Task 1 config
            cfg = None
        if cfg is not None:
            for m in models:
                folder = m.get("cache") or (m.get("id") if m.get("source") == "local" else None)
                config = _read_config(Path(folder)) if folder else None
                batch = cfg.image_batch_size if m["role"] == "image" else cfg.text_batch_size
                needs.append(encoder_need(m["role"], config, batch, cfg.fp16, cfg.text_max_length))
    n_items = (report.facts.get("n_items") or 91_717) if o.data is not None else SCALES[o.scale].n_items
    profile = hardware.get(o.hardware, {}).get("task2", {}) if hardware else {}
    din = o.track == 1
    tcfg = load_train_config(None, **({"model_class": "DIN"} if din else {}))
    amp = bool(profile.get("amp", tcfg.amp))
    batch = int(profile.get("batch_size", tcfg.batch_size))
    needs.append((din_need if din else train_need)(dict(tcfg.model), n_items + 1, batch, amp))
    return needs


def check_gpu(o: RunOptions, report: Report, hardware: dict, models: list | None = None,
              task1_overrides: dict | None = None) -> None:
    """The memory free on GPU 0 once a CUDA context exists (probed in a subprocess, so that this process holds
    none) against each stage's estimated need; the autocast dtype Task 2 will choose."""
    import torch

    from harness import gpu_need
    from task2.train import amp_dtype_for

    if o.device != "cuda" or not torch.cuda.is_available():
        return
    try:
        gpu = gpu_need.probe()
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        report.fail("gpu", f"cannot open a CUDA context on GPU 0 ({e}): check the driver (nvidia-smi)", code=EXIT_USAGE)
        return
    needs = stage_needs(o, report, hardware, models or [], task1_overrides or {})
    free, total = gpu["free"] / GIB, gpu["total"] / GIB
    major, minor = (int(x) for x in str(gpu["capability"]).split("."))
    amp = bool((hardware.get(o.hardware, {}).get("task2") or {}).get("amp", True))
    dtype = amp_dtype_for(torch.device("cuda", 0), amp, capability=(major, minor))
    worst = max(needs, key=lambda n: n.gib)
    report.facts["gpu"] = {"name": gpu["name"], "total_gib": round(total, 2), "free_gib": round(free, 2),
                           "compute_capability": gpu["capability"],
                           "needs_gib": {n.stage: round(n.gib, 2) for n in needs},
                           "task2_autocast": None if dtype is None else str(dtype).replace("torch.", "")}
    if worst.gib > free:
        report.fail("gpu", f"{gpu['name']}: {free:.1f} GiB free of {total:.1f} GiB with a CUDA context, but "
                    f"{worst.stage} needs about {worst.gib:.1f} GiB ({worst.basis}; harness/gpu_need.py): lower "
                    f"{worst.knob} in the stage's config, free the GPU (nvidia-smi), or use a larger card",
                    code=EXIT_USAGE)
    else:
        parts = ", ".join(f"{n.stage} {n.gib:.1f}" for n in needs)
        report.ok("gpu", f"{gpu['name']}, {free:.1f} of {total:.1f} GiB free with a context; estimated needs (GiB): "
                  f"{parts}; compute capability {gpu['capability']}: Task 2 autocasts to "
                  f"{report.facts['gpu']['task2_autocast']}")


# ---------------------------------------------------------------------------------------------
# Data


def _footer(path: Path) -> tuple[int, dict]:
    """Row count and polars schema from a parquet footer (no data pages are read)."""
    import polars as pl
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    return int(rows), dict(pl.read_parquet_schema(path))


def check_data(o: RunOptions, report: Report, hashes) -> None:
    import polars as pl

    from core.covers import cover_findings, scan_covers
    from core.schemas import validate_frame
    from core.validate import DATA_FILES, IMAGES, required_files

    data = o.data
    failed_before = len(report.failures)
    if data is None:
        report.ok("data", f"generated by the synth stage (scale {o.scale}, world {o.world})")
        return
    required = required_files(o.track)
    rows: dict = {}
    for rel, kind in DATA_FILES.items():
        path = data / rel
        if not path.is_file():
            if rel in required:
                report.fail("data", f"absent; the stages of track {o.track} read it: download the "
                            "MicroLens_1M_MMCTR release and keep its layout", path)
            continue
        try:
            n, schema = _footer(path)
        except Exception as e:  # noqa: BLE001 - pyarrow and polars raise many kinds for a broken file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            report.fail("data", f"not a readable parquet file ({first}); re-download it", path)
            continue
        rows[rel] = n
        for f in validate_frame(pl.DataFrame(schema=schema), kind, str(path)):
            report.fail("data", f"[{f.id}] {f.message}; the official file has the columns and dtypes of "
                        "docs/challenge.md section 1", path)
    report.facts["rows"] = rows
    info, feat = rows.get(f"{DATASET_DIR}/item_info.parquet"), rows.get("item_feature.parquet")
    n_items = info - 1 if info else feat
    report.facts["n_items"] = n_items
    for rel in ("item_feature.parquet", "item_emb.parquet"):
        if n_items and rel in rows and rows[rel] != n_items:
            report.fail("data", f"{rows[rel]:,} rows, but item_info defines {n_items:,} items: the files come "
                        "from different releases; re-download them together", data / rel)
    if IMAGES + "/" in required:
        folder = data / IMAGES
        if not folder.is_dir():
            report.fail("data", "cover folder absent: unpack item_images.rar here", folder)
        elif n_items:
            scan = scan_covers(folder, n_items)
            report.facts["covers"] = scan.to_dict()
            for f in cover_findings(scan, folder, strict=o.strict):
                (report.fail if f.severity == "error" else report.warn)("data", f"[{f.id}] {f.message}", folder)
    if len(report.failures) == failed_before:
        report.ok("data", f"{len(rows)} parquet files: footers, columns and dtypes as the contract says"
                  + (f"; {report.facts['covers']['found']:,} covers listed" if "covers" in report.facts else ""), data)
    check_known_data(data, rows, report, hashes)


def check_known_data(data: Path, rows: dict, report: Report, hashes) -> None:
    """The published checksums, when the row counts say this is the official release."""
    official = all(rows.get(rel) == n for rel, n in OFFICIAL_ROWS.items())
    doc = {"official_release_by_row_counts": official, "files": {}}
    report.facts["known_data"] = doc
    if not official:
        doc["note"] = "the row counts are not the official release's: the published checksums do not apply"
        report.ok("known_data", "not the official release by its row counts: no published checksum applies")
        return
    for rel, want in PUBLISHED_SHA256.items():
        got = hashes.sha256(data / rel)
        doc["files"][rel] = {"sha256": got, "published": want, "match": got == want}
        if got != want:
            report.warn("known_data", f"sha256 {got[:16]}... differs from the published {want[:16]}... "
                        "(docs/challenge.md section 1) although the row counts are the official release's: a "
                        "different or damaged copy; re-download it if you mean to reproduce official results",
                        data / rel)
        else:
            report.ok("known_data", "sha256 equals the published checksum", data / rel)


# ---------------------------------------------------------------------------------------------
# Models


def _read_config(folder: Path) -> dict | None:
    try:
        doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _check_folder(folder: Path, role: str, flag: str) -> str | None:
    """Why a local model folder cannot load (None when it looks complete)."""
    config = _read_config(folder)
    if config is None:
        return f"no readable config.json: pass the folder `hf download ID --local-dir DIR` wrote to {flag}"
    if not any((folder / w).is_file() for w in WEIGHTS):
        return f"no weights ({' or '.join(WEIGHTS[::2])}): the download is incomplete; download the model again"
    if role == "image":
        if config.get("model_type") not in ("clip", "clip_vision_model"):
            return (f"a {config.get('model_type')!r} model; the image encoder takes CLIP models "
                    "(or --profile offline)")
        if not (folder / "preprocessor_config.json").is_file():
            return "no preprocessor_config.json (the image processor): download the model again"
    elif not any((folder / t).is_file() for t in TOKENIZER) and not (folder / "tokenizer_config.json").is_file():
        return "no tokenizer files (tokenizer.json or sentencepiece.bpe.model): download the model again"
    return None


def _embedding_dim(spec: str, folder: Path | None, role: str) -> int | None:
    """The width of a model's embedding from its config (CLIP's projection_dim, a text model's hidden_size),
    or None when no config can be read without loading the model."""
    from task1.config import PACKAGED_IMAGE, PACKAGED_TEXT

    if spec == PACKAGED_IMAGE:
        return 1280
    if spec == PACKAGED_TEXT:
        return 384
    if folder is not None:
        config = _read_config(folder) or {}
        value = config.get("projection_dim") if role == "image" else config.get("hidden_size")
        if isinstance(value, int):
            return value
    return None


def check_models(o: RunOptions, report: Report, task1_overrides: dict) -> list[dict]:
    """Each Task 1 model resolvable and openly licensed; returns what the disk estimate needs."""
    from core.errors import UserError
    from core.spdx import MODEL_LICENSES, OPEN_LICENSES, spdx_of
    from task1.config import make_config
    from task1.models import hub_offline, hub_reachable, model_license, resolve

    if o.track == 2:
        report.ok("models", "track 2: no Task 1 model (the dataset's item_info)")
        return []
    try:
        cfg = make_config(o.profile, task1_overrides)
    except UserError as e:
        report.fail("models", e.message, e.path or "", code=EXIT_USAGE)
        return []
    models = []
    for role in cfg.modalities:
        spec = getattr(cfg, f"{role}_model")
        flag = f"--{role}-model"
        rec = {"role": role, "id": spec, "download_bytes": 0}
        models.append(rec)
        try:
            source, location = resolve(spec, role)
        except UserError as e:
            report.fail("models", e.message, e.path or "")
            continue
        rec["source"] = source
        if source == "local":
            why = _check_folder(Path(location), role, flag)
            if why:
                report.fail("models", f"{role} model folder: {why}", location)
                continue
        elif source == "hub":
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
            weights = [w for w in WEIGHTS if isinstance(try_to_load_from_cache(spec, w), str)]
            if isinstance(cached, str) and weights:
                rec["cache"] = str(Path(cached).parent)
                why = _check_folder(Path(cached).parent, role, flag)
                if why:
                    report.fail("models", f"{role} model {spec} in the local Hugging Face cache: {why}")
                    continue
            elif hub_offline():
                report.fail("models", f"{role} model {spec!r} is not in the local Hugging Face cache and the hub "
                            f"is offline (HF_HUB_OFFLINE=1): download it where the hub is reachable (hf download "
                            f"{spec} --local-dir DIR) and pass {flag} DIR, or use --profile offline")
                continue
            elif not hub_reachable():
                report.fail("models", f"{role} model {spec!r} is not in the local Hugging Face cache and the hub "
                            "cannot be reached: download it elsewhere (hf download ID --local-dir DIR) and pass "
                            f"{flag} DIR, or use --profile offline")
                continue
            else:
                rec["download_bytes"] = DOWNLOAD_BYTES.get(spec, 2e9)
                report.warn("models", f"{role} model {spec} is not in the local cache: embed will download about "
                            f"{rec['download_bytes'] / 1e9:.1f} GB from the hub")
        folder = Path(location) if source == "local" else Path(rec["cache"]) if "cache" in rec else None
        rec["dim_known"] = _embedding_dim(spec, folder, role)
        rec["dim"] = rec["dim_known"] or 1024  # the disk estimate's guess when the config is not at hand
        stated = getattr(cfg, f"{role}_model_license")
        found, where = model_license(spec, role, stated)
        rec["license"], rec["license_source"] = found, where
        fix = (f"pass --{role}-model-license SPDX (e.g. mit) if you know the licence, or add a `license:` line "
               f"to the folder's README.md")
        spdx = spdx_of(found) if found else None
        known = MODEL_LICENSES.get(spec)
        if not found:
            report.fail("models", f"{role} model {spec}: licence unknown ({where}); Task 1 may use large models "
                        f"only if they are open source, and harness package refuses an unknown licence: {fix}")
        elif spdx not in OPEN_LICENSES:
            report.fail("models", f"{role} model {spec}: licence {found!r} ({where}) is not an open-source licence "
                        f"(known open: MIT, Apache-2.0, BSD, ...); Task 1 may use only open models: choose another "
                        f"model, or correct --{role}-model-license")
        elif known and known != spdx:
            report.fail("models", f"{role} model {spec}: licence {spdx} stated, but the model is released under "
                        f"{known}: correct --{role}-model-license (or leave it out)", code=EXIT_USAGE)
        else:
            report.ok("models", f"{role} model {spec} ({source}), licence {spdx} from {where}")
    widths = {m["role"]: m.get("dim_known") for m in models}
    if models and all(isinstance(w, int) for w in widths.values()) and sum(widths.values()) < EMB_DIM:
        parts = " + ".join(f"{role} {w}" for role, w in widths.items())
        report.fail("models", f"the fused embedding would have {sum(widths.values())} dimensions ({parts}), fewer than "
                    f"item_emb_d128's {EMB_DIM}: choose encoders whose outputs add up to at least {EMB_DIM} (embed would "
                    "fail only after encoding every cover and title)", code=EXIT_USAGE)
    report.facts["models"] = models
    return models


# ---------------------------------------------------------------------------------------------
# Output folder and disk


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def estimate_bytes(o: RunOptions, report: Report, models: list) -> dict:
    """What the run will write, by part (bytes)."""
    from harness.worlds import SCALES

    parts = {}
    if o.data is None:
        cfg = SCALES[o.scale]
        n_items, test_rows = cfg.n_items, cfg.n_test
        parts["generated data"] = SYNTH_BYTES[o.scale]
    else:
        n_items = report.facts.get("n_items") or 91_717
        test_rows = (report.facts.get("rows") or {}).get(f"{DATASET_DIR}/test.parquet", 379_142)
    if o.track != 2:
        per_item = sum(4 * m.get("dim", 1024) + 33 for m in models)  # float32 embedding, status, cover sha
        parts["task1 caches"] = n_items * per_item
        parts["task1 item_info"] = (n_items + 1) * (128 * 8 + 5 * 8 + 8)
    parts["task2 checkpoint"] = n_items * (128 + 64 + 1) * 4 + 20e6
    parts["prediction"] = test_rows * 60
    parts["submission"] = parts["task2 checkpoint"] + parts["prediction"] + parts.get("task1 item_info", 0) + 5e6
    parts["logs and records"] = 10e6
    return parts


def check_output(o: RunOptions, report: Report, models: list) -> None:
    run_dir: Path = o.run_dir
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        report.fail("output", f"{probe} is a file, not a folder: pass --out a folder path", run_dir, code=EXIT_USAGE)
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".preflight-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        report.fail("output", f"cannot write in {probe} ({e.strerror or e}): pass --out a folder you can write to",
                    run_dir, code=EXIT_USAGE)
        return
    parts = estimate_bytes(o, report, models)
    need = sum(parts.values())
    have = _size_of(run_dir) if run_dir.is_dir() else 0  # an earlier run's caches and outputs are reused
    free = shutil.disk_usage(probe).free
    short = max(0.0, need - have) * 1.2  # 20 % margin for files replaced atomically
    report.facts["disk"] = {"estimate_bytes": {k: int(v) for k, v in parts.items()}, "estimate_total": int(need),
                            "already_there": int(have), "needed_now": int(short), "free": int(free)}
    if free < short:
        report.fail("output", f"{free / 1e9:.2f} GB free on this disk, the run needs about {short / 1e9:.2f} GB "
                    f"(caches and outputs {need / 1e9:.2f} GB, {have / 1e9:.2f} GB already there, 20 % margin): "
                    "free space or pass --out on a larger disk", run_dir, code=EXIT_USAGE)
    else:
        report.ok("output", f"writable; about {short / 1e9:.2f} GB needed, {free / 1e9:.1f} GB free", run_dir)
    downloads = sum(m.get("download_bytes", 0) for m in models)
    if downloads:
        from huggingface_hub import constants

        cache = Path(constants.HF_HUB_CACHE)
        probe = cache
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < downloads * 1.1:
            report.fail("output", f"{free / 1e9:.2f} GB free for the model downloads ({downloads / 1e9:.1f} GB): "
                        "free space, or set HF_HOME to a larger disk", cache, code=EXIT_USAGE)


# ---------------------------------------------------------------------------------------------


def run_preflight(o: RunOptions, hashes=None, hardware: dict | None = None, task1_overrides: dict | None = None) -> Report:
    """All checks for the pipeline options `o` (harness.pipeline's); never raises for a user problem."""
    from harness.stamps import HashCache

    t0 = time.perf_counter()
    report = Report()
    hashes = hashes if hashes is not None else HashCache()
    check_device(o, report)
    check_data(o, report, hashes)
    models = check_models(o, report, task1_overrides or {})
    check_output(o, report, models)
    check_gpu(o, report, hardware or {}, models, task1_overrides or {})
    report.seconds = time.perf_counter() - t0
    return report


def render(report: Report) -> str:
    mark = {"ok": "ok  ", "warning": "warn", "error": "FAIL"}
    lines = [f"{mark[c.status]}  {c.line()}" for c in report.checks]
    n_err, n_warn = len(report.failures), len(report.warnings)
    verdict = "preflight passed" if not n_err else "preflight FAILED"
    lines.append(f"{verdict} in {report.seconds:.1f}s: {n_err} error(s), {n_warn} warning(s)")
    return "\n".join(lines)
