"""What a file of a package is, by its bytes, whatever its name or manifest role; and where the layout
lets each kind of content be.

`kind_of(ctx, rel)` sniffs the first bytes: safetensors, zip, npy, hdf5, gguf, tflite, parquet, png,
jpeg, gif, compressed streams (gzip, bz2, xz, zstd, 7z), tar, ELF, pickle, text, or binary. The
layout (`allowed_kinds`) has a place for weights only in the Task 2 checkpoint and, on tracks 1
and 3, Task 1's reducer; for a parquet file only in Task 1's item_info; for an archive only in
prediction.zip; for images only as figures among the outputs. `hidden_data` then looks inside the
containers the layout allows for room that holds no declared content (bytes after a PNG's end,
parquet bytes no column chunk claims, oversized metadata), and inside text files for what a model's
parameters look like as text (many numbers, long encoded runs).
"""

from __future__ import annotations

import re

from referee.inspection import formats

MAGIC = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x93NUMPY", "npy"), (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"GGUF", "gguf"), (b"PAR1", "parquet"), (formats.PNG_SIGNATURE, "png"), (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"), (b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x7fELF", "elf"), (b"CBM1", "catboost"),
)
WEIGHT_KINDS = {"safetensors", "npy", "hdf5", "gguf", "tflite", "catboost"}
MAX_TEXT_BYTES = 16 * 1024 * 1024  # records, configs, docs and code (prediction.csv is the exception)
MAX_NUMBERS = 20_000  # numbers in one text file other than the prediction
MAX_ENCODED_RUN = 64 * 1024  # one run of base64/hex characters
MAX_FIGURE_BYTES = 8 * 1024 * 1024
NUMBER = re.compile(rb"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
ENCODED = re.compile(rb"[A-Za-z0-9+/=_-]{%d,}" % MAX_ENCODED_RUN)


def kind_of(ctx, rel: str) -> str:
    """The content kind of a file from its first bytes (see the module docstring)."""
    return ctx.memo(("kind", rel), lambda: _sniff(ctx, rel))


def _sniff(ctx, rel: str) -> str:
    size = ctx.size(rel)
    head = ctx.head(rel, 512)
    if not head:
        return "empty"
    if formats.looks_like_safetensors(head, size):
        return "safetensors"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[257:262] == b"ustar":
        return "tar"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "binary"
    return "text"


def allowed_kinds(ctx, rel: str) -> set[str]:
    """The content kinds the layout allows at `rel` (beyond text)."""
    parts = rel.split("/")
    out: set[str] = set()
    if rel == ctx.one("task2_checkpoint") and len(ctx.with_role("task2_checkpoint")) >= 1:
        out |= {"safetensors", "zip"}  # zip: a torch weights-only .pt, scanned by T2-CHECKPOINT-FORMAT
    if ctx.track in (1, 3) and rel in ("outputs/task1/reducer.safetensors", "outputs/task1/reducer.npz"):
        out |= {"safetensors", "zip"}
    if ctx.track in (1, 3) and rel == "outputs/task1/item_info.parquet":
        out.add("parquet")
    if rel == "prediction.zip":
        out.add("zip")
    if parts[0] == "outputs" and rel.endswith(".png"):
        out.add("png")
    return out


def hidden_data(ctx, rel: str, kind: str) -> list[str]:
    """Room inside an allowed file that holds no declared content (see the module docstring)."""
    if kind == "png":
        return formats.png_problems(ctx.read_bytes(rel, MAX_FIGURE_BYTES))
    if kind == "parquet":
        uncompressed, problems = formats.parquet_layout(ctx.checked_path(rel), ctx.size(rel))
        ctx.inflate(uncompressed, rel)
        return problems
    if kind == "safetensors" and rel != ctx.one("task2_checkpoint"):
        head = ctx.head(rel, 16)
        _tensors, _meta, problems = formats.read_safetensors(ctx.checked_path(rel), ctx.size(rel),
                                                             int.from_bytes(head[:8], "little"))
        return problems
    if kind == "text" and rel != ctx.one("prediction"):
        data = ctx.read_bytes(rel, MAX_TEXT_BYTES)
        out = []
        try:
            data.decode("utf-8")
            binary = b"\x00" in data
        except UnicodeDecodeError:
            binary = True
        if binary:
            out.append("binary data after a text beginning (NUL bytes or invalid UTF-8): it could hold weights")
        n = sum(1 for _ in NUMBER.finditer(data))
        if n > MAX_NUMBERS:
            out.append(f"{n:,} numbers in a text file (limit {MAX_NUMBERS:,}): a model's parameters as text?")
        run = ENCODED.search(data)
        if run:
            out.append(f"a run of {len(run.group(0)):,} base64/hex characters: encoded data")
        return out
    return []
