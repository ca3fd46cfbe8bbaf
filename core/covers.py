"""One policy for missing and unreadable covers, shared by `harness validate`, `harness embed` and the
pipeline's preflight.

A cover (`item_images/<item_id>.jpg`) that is missing or unreadable is a warning: it is counted and the
item ids are listed, and `harness embed` gives the item the normalised mean image embedding of the
readable covers (its title still counts). Beyond MAX_BAD_SHARE of the items the run stops: that many
bad covers means a broken download or unpack, not a few damaged files. `--strict` makes every one an
error.

What each step can see: the preflight lists the folder (names and sizes: a missing or empty file),
`harness validate` also reads each file's first bytes (not an image format Pillow reads), and `harness
embed` decodes every cover (a truncated or corrupt file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import Finding, error, warning

MAX_BAD_SHARE = 0.01  # at most 1 % of the items may have a missing or unreadable cover
LISTED = 5  # item ids named in a one-line message
# first bytes of the formats Pillow decodes that a cover plausibly is
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"RIFF")
COVER = re.compile(r"(\d+)\.jpg")


@dataclass
class CoverScan:
    """What a look at the cover folder found, for items 1..n_items."""

    n_items: int
    found: int = 0
    missing: list = field(default_factory=list)  # item ids, ascending
    unreadable: list = field(default_factory=list)  # item ids, ascending: empty, or not an image
    stray: list = field(default_factory=list)  # file names that are no item's cover

    @property
    def bad(self) -> int:
        return len(self.missing) + len(self.unreadable)

    def to_dict(self) -> dict:
        return {"items": self.n_items, "found": self.found, "missing": len(self.missing),
                "unreadable": len(self.unreadable), "missing_ids": self.missing[:1000],
                "unreadable_ids": self.unreadable[:1000], "max_bad_share": MAX_BAD_SHARE}


def scan_covers(folder: Path, n_items: int, read_headers: bool = False) -> CoverScan:
    """List `folder` once (names and sizes); with `read_headers`, also read each cover's first bytes."""
    scan = CoverScan(n_items)
    present = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            m = COVER.fullmatch(entry.name)
            item = int(m.group(1)) if m else 0
            if not (1 <= item <= n_items) or not entry.is_file():
                scan.stray.append(entry.name)
                continue
            present.add(item)
            try:
                size = entry.stat().st_size
                if size == 0:
                    scan.unreadable.append(item)
                elif read_headers:
                    with open(entry.path, "rb") as f:
                        if not f.read(8).startswith(MAGIC):
                            scan.unreadable.append(item)
            except OSError:
                scan.unreadable.append(item)
    scan.found = len(present)
    if scan.found < n_items:
        scan.missing = [i for i in range(1, n_items + 1) if i not in present]
    scan.unreadable.sort()
    return scan


def _first(ids: list) -> str:
    return ", ".join(f"{i}.jpg" for i in ids[:LISTED]) + (", ..." if len(ids) > LISTED else "")


def over_limit(bad: int, n_items: int) -> bool:
    return n_items > 0 and bad / n_items > MAX_BAD_SHARE


def limit_text() -> str:
    return f"at most {MAX_BAD_SHARE:.0%} of the items may have a missing or unreadable cover"


def cover_findings(scan: CoverScan, folder: str | Path, strict: bool = False) -> list[Finding]:
    """The policy applied to a scan: warnings, or errors beyond MAX_BAD_SHARE or with `strict`."""
    folder = str(folder)
    out = []
    stop = strict or over_limit(scan.bad, scan.n_items)
    if stop and not strict:
        why = (f"{scan.bad:,} of {scan.n_items:,} covers are missing or unreadable ({scan.bad / scan.n_items:.1%}); "
               f"{limit_text()}: restore item_images/ from item_images.rar")
    elif strict:
        why = ("--strict: restore them from item_images.rar, or run without --strict to replace them by the mean "
               "image embedding")
    else:
        why = ("embed replaces each by the mean image embedding and lists them in task1.json "
               f"({limit_text()}; --strict makes any an error)")
    make = error if stop else warning
    if scan.missing:
        out.append(make("data.image_missing", f"{len(scan.missing):,} of {scan.n_items:,} items have no cover "
                        f"(first: {_first(scan.missing)}); {why}", folder))
    if scan.unreadable:
        out.append(make("data.image_unreadable", f"{len(scan.unreadable):,} covers are empty or not an image "
                        f"(first: {_first(scan.unreadable)}); {why}", folder))
    if scan.stray:
        out.append(warning("data.image_stray", f"{len(scan.stray):,} files are not <item_id>.jpg for an item "
                           f"1..{scan.n_items} (first: {', '.join(sorted(scan.stray)[:3])})", folder))
    return out
