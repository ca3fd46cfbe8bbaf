"""Safe inspection of weight and data files: nothing here imports, executes or unpickles what it reads.

The well-kept parsers do the parsing; this module adds only the checks they do not make:

- safetensors: `read_safetensors` opens the file with the safetensors library's own loader
  (`safe_open`, which refuses overlapping tensors, gaps and bytes no tensor claims), then bounds
  what the loader accepts but a second model could hide in: `__metadata__` text and header bytes
  beyond what the tensors' descriptions need (padding, unknown fields).
- torch checkpoints: `torch_unsafe_globals` asks torch (`get_unsafe_globals_in_checkpoint`) which
  globals a `.pt` zip's pickle would import beyond torch's weights-only set; it never unpickles.
- pickles: `sniff_pickle` walks opcodes with `pickletools.genops` (decodes, builds nothing).
- `.npy`: `npy_header` reads the header with numpy's own header parser (a literal, never code).
- parquet: `parquet_layout` reads the footer with pyarrow (no data page is decompressed) and reports
  the bytes no column chunk claims and the key-value metadata's size.
- PNG: `png_problems` walks the chunk list: bytes after IEND and large ancillary chunks are problems.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct

from referee.facts import SAFETENSORS_METADATA

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
MAX_METADATA_BYTES = 64 * 1024  # __metadata__ holds a few strings; more could smuggle weights as text
MAX_PICKLE_SCAN = 64 * 1024 * 1024  # text pickles (protocols 0/1) are walked up to this size
HEADER_SLACK_PER_TENSOR = 24  # whitespace a pretty-printing writer may add per tensor entry
MAX_PARQUET_METADATA = 64 * 1024  # key-value metadata (polars writes ~300 bytes of ARROW:schema)
MAX_PNG_ANCILLARY = 16 * 1024  # text/colour chunks of a figure (matplotlib writes ~100 bytes)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FormatError(Exception):
    """The file is not what its name says (one line, for a finding)."""


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """The first bytes of a file (at least 9) look like a safetensors header."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(MAX_SAFETENSORS_HEADER, size - 8) and head[8:9] == b"{"


def _entry_bound(name: str, dtype: str, shape: list, size: int) -> int:
    """Bytes the compact JSON entry `"name":{"dtype":..,"shape":[..],"data_offsets":[a,b]},` needs."""
    return (len(json.dumps(name)) + len(dtype) + len(json.dumps(shape, separators=(",", ":"))) + 2 * len(str(size))
            + len(':{"dtype":"","shape":,"data_offsets":[,]},') + HEADER_SLACK_PER_TENSOR)


def read_safetensors(path, size: int, header_len: int) -> tuple[dict, dict | None, list[str]]:
    """({name: (dtype, shape)}, metadata, problems) of a safetensors file, via the library's loader.

    Raises FormatError when the loader refuses the file. `header_len` is the file's first 8 bytes
    (little-endian): the header's length, compared with what the tensors and metadata need.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
            tensors = {}
            for name in f.keys():
                sl = f.get_slice(name)
                tensors[name] = (sl.get_dtype(), list(sl.get_shape()))
    except Exception as e:  # SafetensorError, OSError, ValueError: the loader's refusals
        raise FormatError(" ".join(str(e).split())[:200] or type(e).__name__) from None
    problems = []
    meta_bytes = sum(len(k) + len(v) for k, v in (metadata or {}).items())
    if meta_bytes > MAX_METADATA_BYTES:
        problems.append(f"__metadata__ holds {meta_bytes:,} bytes of text (limit {MAX_METADATA_BYTES:,})")
    for key, value in sorted((metadata or {}).items()):
        limit = SAFETENSORS_METADATA.get(key)
        if limit is None:
            problems.append(f"__metadata__ key {key[:60]!r} is not one a package writes "
                            f"({', '.join(SAFETENSORS_METADATA)}); its {len(value):,} characters could hold anything")
        elif len(value) > limit:
            problems.append(f"__metadata__ {key!r} holds {len(value):,} characters (limit {limit:,})")
    need = 2 + 8 + sum(_entry_bound(n, d, s, size) for n, (d, s) in tensors.items())
    if metadata:
        need += len(json.dumps({"__metadata__": metadata})) + 16 * len(metadata)
    if header_len > need:
        problems.append(f"the header holds {header_len - need:,} bytes beyond what its tensors and metadata need")
    return tensors, metadata, problems


def torch_unsafe_globals(path) -> list[str]:
    """Globals a torch zip checkpoint's pickle would import beyond torch's weights-only set (torch's
    own scan, no unpickling). Raises FormatError when the file is not a torch zip checkpoint."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    try:
        return sorted(get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as e:  # torch raises ValueError / RuntimeError for what it cannot read
        raise FormatError(f"not a readable torch checkpoint ({type(e).__name__})") from None


# ---------------------------------------------------------------------------------------------
# Pickles


def sniff_pickle(data: bytes) -> bool:
    """True when `data` is a whole pickle (any protocol). Decodes opcodes only; builds nothing."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    if len(data) < 2 or len(data) > MAX_PICKLE_SCAN:
        return False
    stream = io.BytesIO(data)
    count = 0
    try:
        for op, _arg, _pos in pickletools.genops(stream):
            count += 1
            if op.name == "STOP":
                break
        else:
            return False
    except Exception:  # genops raises ValueError, KeyError, UnicodeDecodeError, struct.error, ... on non-pickles
        return False
    rest = data[stream.tell():]
    return count >= 2 and not rest.strip()


# ---------------------------------------------------------------------------------------------
# numpy


def npy_header(fileobj) -> tuple[str, tuple, bool]:
    """(dtype str, shape, holds Python objects) of a .npy stream; raises FormatError when malformed."""
    import numpy as np
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fileobj)
        if version == (1, 0):
            shape, _fortran, dtype = npf.read_array_header_1_0(fileobj, max_header_size=100_000)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = npf.read_array_header_2_0(fileobj, max_header_size=100_000)
        else:
            raise FormatError(f"unknown .npy version {version}")
    except FormatError:
        raise
    except Exception as e:  # numpy raises ValueError for a bad header
        raise FormatError(f"not a readable .npy header ({type(e).__name__})") from None
    return str(dtype), tuple(shape), bool(np.dtype(dtype).hasobject)


# ---------------------------------------------------------------------------------------------
# parquet and PNG


def parquet_layout(path, size: int) -> tuple[int, list[str]]:
    """(uncompressed bytes of the data, problems) from the footer alone; FormatError when unreadable.

    Column chunks must tile the file from byte 4; what lies between the last chunk and the footer is
    the page index, bounded by 4 KiB + 1/8192 of the data (polars writes ~4 KB for 100 MB).
    """
    import pyarrow.parquet as pq

    try:
        md = pq.read_metadata(str(path))
        chunks, uncompressed = [], 0
        for g in range(md.num_row_groups):
            group = md.row_group(g)
            uncompressed += int(group.total_byte_size)
            for c in range(group.num_columns):
                col = group.column(c)
                start = col.dictionary_page_offset if col.has_dictionary_page and col.dictionary_page_offset \
                    else col.data_page_offset
                chunks.append((int(start), int(start) + int(col.total_compressed_size)))
        kv = md.metadata or {}
        footer = int(md.serialized_size)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a broken footer
        raise FormatError(f"not a readable parquet file ({type(e).__name__})") from None
    problems = []
    kv_bytes = sum(len(k) + len(v) for k, v in kv.items())
    if kv_bytes > MAX_PARQUET_METADATA:
        problems.append(f"key-value metadata of {kv_bytes:,} bytes (limit {MAX_PARQUET_METADATA:,})")
    cursor, loose = 4, 0
    for start, end in sorted(chunks):
        if start < cursor:
            problems.append("column chunks overlap")
            break
        loose += start - cursor
        cursor = end
    footer_start = size - 8 - footer
    if footer_start < cursor:
        problems.append("the footer overlaps the column chunks")
    else:
        loose += footer_start - cursor
        bound = 4096 + (cursor - 4) // 8192
        if loose > bound:
            problems.append(f"{loose:,} bytes belong to no column chunk (page indexes need at most {bound:,})")
    return uncompressed, problems


def png_problems(data: bytes) -> list[str]:
    """What a PNG holds beyond its image: bytes after IEND, large ancillary (text, private) chunks."""
    if not data.startswith(PNG_SIGNATURE):
        return ["not a PNG file"]
    pos, ancillary, end_seen = len(PNG_SIGNATURE), 0, False
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        nxt = pos + 12 + length
        if nxt > len(data):
            return [f"chunk {kind!r} runs past the end of the file"]
        if kind == b"IEND":
            pos, end_seen = nxt, True
            break
        if kind not in (b"IHDR", b"PLTE", b"IDAT"):
            ancillary += length
        pos = nxt
    problems = []
    if not end_seen:
        problems.append("no IEND chunk")
    if len(data) > pos:
        problems.append(f"{len(data) - pos:,} bytes after the image's end (IEND)")
    if ancillary > MAX_PNG_ANCILLARY:
        problems.append(f"{ancillary:,} bytes of ancillary chunks (limit {MAX_PNG_ANCILLARY:,})")
    return problems
