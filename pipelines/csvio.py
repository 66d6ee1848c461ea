"""Reading exports with exact physical line numbers, and writing CSV that stays text in a spreadsheet.

DuckDB's CSV reader parses the records (RFC 4180 quoting, embedded newlines), but it numbers
rejected rows by record rather than by physical line, gives no line number for accepted rows, and
silently skips blank lines. The spec wants the physical line where each record starts and wants
a malformed row quarantined, not skipped. So `index_records` first finds record boundaries and
field counts with a vectorised scan (quote parity: a newline or comma ends a record or field only
outside quotes), chunk by chunk so memory stays bounded; well-formed records then go to DuckDB
and are matched back to their line numbers by position.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024
_NL, _QUOTE, _COMMA = 10, 34, 44


class CsvError(ValueError):
    """A file that cannot be read at all (encoding, no header)."""


@dataclass
class RecordIndex:
    header: list[str]
    header_end: int  # byte offset where the first data record starts
    starts: np.ndarray  # byte offset of each data record
    ends: np.ndarray  # byte offset just past each record's terminator (or EOF)
    lines: np.ndarray  # physical line number (1-based; header is line 1) of each record's start
    fields: np.ndarray  # field count of each record
    open_quote: bool  # the last record ends inside an unclosed quote

    def malformed(self) -> np.ndarray:
        bad = self.fields != len(self.header)
        if self.open_quote and len(bad):
            bad[-1] = True
        return bad


def index_records(path: Path) -> RecordIndex:
    """Record boundaries, physical start lines and field counts of a CSV file, header first."""
    starts: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    commas: list[np.ndarray] = []
    parity = 0  # 1 while inside a quoted field, carried across chunks
    offset = 0  # global byte offset of the current chunk
    newlines_before = 0  # physical newlines seen before the current chunk
    rec_start, rec_line, rec_commas = 0, 1, 0  # the record still open at the chunk boundary
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(CHUNK)
            if not buf:
                break
            a = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(a == _NL)
            cm = np.flatnonzero(a == _COMMA)
            qt = np.flatnonzero(a == _QUOTE)
            if len(qt) == 0 and parity == 0:
                # Fast path (most billing exports): no quotes, every newline and comma counts.
                rec_nl, rec_cm = nl, cm
            else:
                # Parity after each quote; a position is inside quotes iff an odd number of quotes
                # precede it (escaped "" toggles twice and cancels out).
                q_par = (np.arange(1, len(qt) + 1) + parity) & 1
                def outside(pos: np.ndarray) -> np.ndarray:
                    if len(qt) == 0:  # the whole chunk lies inside one quoted field
                        return pos[:0]
                    k = np.searchsorted(qt, pos)  # quotes strictly before pos
                    par = np.where(k > 0, q_par[np.maximum(k - 1, 0)], parity)
                    return pos[par == 0]
                rec_nl, rec_cm = outside(nl), outside(cm)
                parity = int(q_par[-1]) if len(qt) else parity
            # Commas per record segment: segment j ends at rec_nl[j]; the last one stays open.
            # (commas before each record end, differenced: O(records log commas), no per-comma pass)
            before = np.searchsorted(rec_cm, rec_nl)
            per_seg = np.diff(np.concatenate(([0], before, [len(rec_cm)])))
            if len(rec_nl):
                # Record starts: the open one, then one after each record-ending newline.
                seg_starts = np.concatenate(([rec_start], offset + rec_nl[:-1] + 1))
                # Physical line of each start = 1 + all newlines before it.
                nl_before = newlines_before + np.searchsorted(nl, rec_nl[:-1], side="right")
                seg_lines = np.concatenate(([rec_line], 1 + nl_before))
                seg_commas = per_seg[:-1].copy()
                seg_commas[0] += rec_commas
                starts.append(seg_starts)
                lines.append(seg_lines)
                commas.append(seg_commas)
                rec_start = offset + int(rec_nl[-1]) + 1
                rec_line = 1 + newlines_before + int(np.searchsorted(nl, rec_nl[-1], side="right"))
                rec_commas = int(per_seg[-1])
            else:
                rec_commas += int(per_seg[-1])
            newlines_before += len(nl)
            offset += len(buf)
    size = offset
    open_quote = parity == 1
    if rec_start < size:  # a last record without a trailing newline
        starts.append(np.array([rec_start]))
        lines.append(np.array([rec_line]))
        commas.append(np.array([rec_commas]))
    all_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    all_lines = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)
    all_fields = (np.concatenate(commas) + 1) if commas else np.zeros(0, dtype=np.int64)
    if len(all_starts) == 0:
        raise CsvError(f"{path.name}: the file is empty (no header row)")
    ends = np.append(all_starts[1:], size)
    with open(path, "rb") as fh:
        head = fh.read(int(ends[0]))
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError(f"{path.name}: the header is not UTF-8") from None
    header = next(csv.reader(io.StringIO(text)), [])
    header = [h.strip() for h in header]
    return RecordIndex(
        header=header,
        header_end=int(ends[0]),
        starts=all_starts[1:],
        ends=ends[1:],
        lines=all_lines[1:].astype(np.int64),
        fields=all_fields[1:].astype(np.int64),
        open_quote=open_quote,
    )


#: the fast path gives up (and the record index takes over) when more lines than this hold a quote
MAX_QUOTED_LINES = 10_000


@dataclass
class PhysicalLines:
    """Every data line of a file whose records are exactly its physical lines (see `read_lines`)."""

    plain: pa.Table  # row_number (int64, the physical line), line (text), commas: lines without a quote
    quoted_rows: np.ndarray  # physical line numbers of the lines that hold a quote, in file order
    quoted_text: bytes  # those lines, each ending in a newline (for the record index and DuckDB's parser)


def read_lines(path: Path) -> PhysicalLines | None:
    """The data lines of `path` with their physical line numbers, read on all cores, or None.

    When no record spans two lines, a record's line number is its position plus 2 (the header is
    line 1), so the file can be split at newlines by Polars' multi-threaded reader instead of
    indexed byte by byte. That holds when the file has no blank line, no carriage return outside a
    CRLF line end and no line with an odd number of quotes; None sends any other file (and one
    Polars cannot read, e.g. bytes that are not UTF-8) to `index_records`, which handles every case. Lines that hold a
    quote are returned apart, so that DuckDB's CSV parser (through the record index) splits them.
    """
    import polars as pl

    with open(path, "rb") as fh:
        if fh.readline().count(b'"') % 2:
            return None  # a header that spans lines
    try:
        frame = pl.read_csv(path, has_header=False, skip_rows=1, infer_schema=False, separator="\x1f",
                            quote_char=None, new_columns=["line"], row_index_name="row_number",
                            row_index_offset=2)
    except pl.exceptions.PolarsError:  # e.g. bytes that are not UTF-8, no data line, a 0x1f byte
        return None
    line = frame["line"]
    if frame.width != 2 or line.null_count() or line.str.contains("\r", literal=True).any():
        return None  # a blank line (Polars keeps it as a null) or a CR that is not part of a CRLF line end
    has_quote = line.str.contains('"', literal=True)
    quoted = frame.filter(has_quote)
    if quoted.height > MAX_QUOTED_LINES or (quoted["line"].str.count_matches('"', literal=True) % 2 == 1).any():
        return None  # quoted everywhere, or a quoted field that holds a newline
    plain = frame.filter(~has_quote) if quoted.height else frame
    plain = plain.select(pl.col("row_number").cast(pl.Int64), "line",
                         pl.col("line").str.count_matches(",", literal=True).cast(pl.Int32).alias("commas"))
    text = ("\n".join(quoted["line"].to_list()) + "\n").encode() if quoted.height else b""
    # string_view columns: DuckDB scans them as they are (no copy into Arrow's large_string)
    return PhysicalLines(plain=plain.to_arrow(compat_level=pl.CompatLevel.newest()),
                         quoted_rows=quoted["row_number"].cast(pl.Int64).to_numpy(), quoted_text=text)


def read_header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(1024 * 1024)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError(f"{path.name}: the header is not UTF-8") from None
    return [h.strip() for h in next(csv.reader(io.StringIO(text)), [])]


def well_formed_copy(path: Path, idx: RecordIndex, bad: np.ndarray, dest: Path) -> Path:
    """The data records of `path` without the malformed ones (byte ranges copied as they are).

    Returns `path` itself when nothing is malformed, so the common case copies nothing.
    """
    bad_pos = np.flatnonzero(bad)
    if len(bad_pos) == 0:
        return path
    with open(path, "rb") as src, open(dest, "wb") as out:
        src.seek(idx.header_end)
        keep_from = idx.header_end
        for i in bad_pos:  # a loop over the few malformed records only
            _copy_range(src, out, keep_from, int(idx.starts[i]))
            keep_from = int(idx.ends[i])
        _copy_range(src, out, keep_from, None)
    return dest


def _copy_range(src, out, start: int, stop: int | None) -> None:
    src.seek(start)
    if stop is None:
        shutil.copyfileobj(src, out, CHUNK)
        return
    remaining = stop - start
    while remaining > 0:
        buf = src.read(min(CHUNK, remaining))
        if not buf:
            break
        out.write(buf)
        remaining -= len(buf)


def raw_records(path: Path, idx: RecordIndex, positions: np.ndarray) -> list[str]:
    """The raw text of a few records (for quarantine messages)."""
    out = []
    with open(path, "rb") as fh:
        for i in positions:
            fh.seek(int(idx.starts[i]))
            out.append(fh.read(int(idx.ends[i] - idx.starts[i])).decode("utf-8", "replace").rstrip("\r\n"))
    return out


def line_table(lines: np.ndarray) -> pa.Table:
    return pa.table({"row_number": pa.array(lines, type=pa.int64())})


# --- writing ---------------------------------------------------------------------------------

_FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str | None) -> str | None:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (OWASP advice)."""
    if value and value.startswith(_FORMULA_LEAD):
        return "'" + value
    return value
