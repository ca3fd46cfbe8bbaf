"""Safe inspection of weight and data files: nothing here imports, executes or unpickles what it reads.

- `read_safetensors_header` parses a safetensors file's header by hand (8-byte little-endian length,
  then JSON) and checks that the tensors tile the data buffer exactly: no overlap, no gap, no trailing
  bytes, no oversized metadata. Bytes that no tensor claims could hide a second model, so they are
  reported as problems.
- `sniff_pickle` says whether bytes are a pickle: the protocol 2+ magic, or (protocols 0 and 1, which
  are plain text) a walk of the opcodes with `pickletools.genops` that reaches STOP at the end of the
  file. `genops` only decodes opcodes; it never builds an object.
- `pickle_globals` lists the `module.name` globals a pickle would import, by walking its opcodes (and
  a small simulation of the string pushes that feed STACK_GLOBAL). A torch `.pt` checkpoint passes only
  when every global is in `TORCH_WEIGHTS_GLOBALS`.
- `npy_header` reads a `.npy` header with numpy's header parser (a literal, never code) to tell whether
  the array holds Python objects (which np.load could only read by unpickling).
"""

from __future__ import annotations

import io
import json
import math
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field

SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
MAX_METADATA_BYTES = 64 * 1024  # __metadata__ holds a few strings; more could smuggle weights as text
MAX_PICKLE_SCAN = 64 * 1024 * 1024  # text pickles (protocols 0/1) are walked up to this size

# What torch.save writes for a flat name -> tensor dict (the globals torch's weights_only loader allows
# for it); anything else in a checkpoint's pickle is a finding.
TORCH_WEIGHTS_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.storage.UntypedStorage",
    *(f"torch.{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                    "Byte", "Bool", "ComplexFloat", "ComplexDouble")),
})

STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
              "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
MEMO_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
MEMO_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


class FormatError(Exception):
    """The file is not what its name says (one line, for a finding)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict | None
    header_size: int
    data_size: int
    problems: list[str] = field(default_factory=list)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise FormatError(f"the header names tensor {dup!r} twice")
    return dict(pairs)


def read_safetensors_header(f) -> SafetensorsHeader:
    """Parse and check the header of a safetensors file open for binary reading (or a path).

    Raises FormatError when it is not a safetensors file. Problems that keep the file readable but
    make it suspicious (gaps, trailing bytes, large metadata) are returned in `problems`.
    """
    if not hasattr(f, "read"):
        with open(f, "rb") as fh:
            return read_safetensors_header(fh)
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise FormatError("shorter than the 8-byte safetensors header length")
    (n,) = struct.unpack("<Q", head)
    if n < 2 or n > MAX_SAFETENSORS_HEADER or 8 + n > size:
        raise FormatError(f"header length {n} does not fit a {size}-byte file")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except FormatError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object of tensors")
    data_size = size - 8 - n
    problems: list[str] = []
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise FormatError("__metadata__ must map strings to strings")
        meta_bytes = sum(len(k) + len(v) for k, v in metadata.items())
        if meta_bytes > MAX_METADATA_BYTES:
            problems.append(f"__metadata__ holds {meta_bytes:,} bytes of text (limit {MAX_METADATA_BYTES:,}): "
                            "data hidden outside the tensors")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"entry {name!r} is not {{dtype, shape, data_offsets}}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise FormatError(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise FormatError(f"tensor {name!r} has a bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise FormatError(f"tensor {name!r} has bad data_offsets {offsets!r}")
        start, end = offsets
        if not 0 <= start <= end <= data_size:
            raise FormatError(f"tensor {name!r} points outside the file ({start}..{end} of {data_size})")
        if end - start != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
            raise FormatError(f"tensor {name!r}: {end - start} bytes for shape {shape} of {dtype}")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), start, end)
    cursor = 0
    for t in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if t.start < cursor:
            raise FormatError(f"tensor {t.name!r} overlaps another tensor's bytes")
        if t.start > cursor:
            problems.append(f"{t.start - cursor:,} bytes before tensor {t.name!r} belong to no tensor")
        cursor = t.end
    if cursor < data_size:
        problems.append(f"{data_size - cursor:,} bytes after the last tensor belong to no tensor")
    return SafetensorsHeader(tensors, metadata, n, data_size, problems)


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """The first bytes of a file (at least 9) look like a safetensors header."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(MAX_SAFETENSORS_HEADER, size - 8) and head[8:9] == b"{"


# ---------------------------------------------------------------------------------------------
# Pickles


def _walk(data: bytes):
    """Yield (opcode name, argument) until STOP; raise ValueError (or others) when not a pickle."""
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        yield op.name, arg


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


def pickle_globals(data: bytes) -> tuple[set[str], list[str]]:
    """The globals a pickle refers to (`module.name`) and problems (globals it builds from computed names).

    Never unpickles: it walks the opcodes and tracks which strings were pushed or memoised, which is
    how STACK_GLOBAL gets its module and name in the pickles torch and the standard library write.
    """
    found: set[str] = set()
    problems: list[str] = []
    pushes: list = []
    memo: dict = {}
    try:
        for name, arg in _walk(data):
            if name in ("GLOBAL", "INST"):
                found.add(str(arg).replace(" ", "."))
                pushes.append(None)
            elif name == "STACK_GLOBAL":
                mod, attr = (pushes[-2], pushes[-1]) if len(pushes) >= 2 else (None, None)
                if isinstance(mod, str) and isinstance(attr, str):
                    found.add(f"{mod}.{attr}")
                else:
                    problems.append("a STACK_GLOBAL whose module and name are not plain strings")
                pushes[-2:] = [None]
            elif name in STRING_OPS:
                pushes.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = pushes[-1] if pushes else None
            elif name in MEMO_PUT_OPS:
                memo[arg] = pushes[-1] if pushes else None
            elif name in MEMO_GET_OPS:
                pushes.append(memo.get(arg))
            elif name == "STOP":
                break
            else:
                pushes.append(None)
    except Exception as e:  # a truncated or malformed pickle
        problems.append(f"the pickle cannot be decoded ({type(e).__name__})")
    return found, problems


def torch_zip_pickle(path) -> tuple[bytes | None, str | None]:
    """The `data.pkl` member of a torch zip checkpoint, or (None, why not)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i for i in zf.infolist() if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
            if len(names) != 1:
                return None, "not a torch checkpoint (no single data.pkl inside the zip)"
            if names[0].file_size > MAX_PICKLE_SCAN:
                return None, f"data.pkl is {names[0].file_size:,} bytes; too large to scan"
            return zf.read(names[0]), None
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        return None, f"not a readable zip ({type(e).__name__})"


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
