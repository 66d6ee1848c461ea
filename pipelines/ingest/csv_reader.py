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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024
_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44


class CsvError(ValueError):
    """A file that cannot be read at all (encoding, no header)."""


#: a record longer than this is quarantined, not parsed (DuckDB's reader stops at 2 MiB lines)
MAX_RECORD_BYTES = 1024 * 1024

# why a record cannot be parsed (RecordIndex.problem); 0 = fine
FIELD_COUNT, NOT_UTF8, STRAY_CR, TOO_LONG = 1, 2, 3, 4


class UnclosedQuote(CsvError):
    """A quoted field is still open at the end of the file: it would swallow every row after it."""


@dataclass
class RecordIndex:
    header: list[str]
    header_end: int  # byte offset where the first data record starts
    starts: np.ndarray  # byte offset of each data record
    ends: np.ndarray  # byte offset just past each record's terminator (or EOF)
    lines: np.ndarray  # physical line number (1-based; header is line 1) of each record's start
    fields: np.ndarray  # field count of each record
    problem: np.ndarray  # why each record cannot be parsed: 0, FIELD_COUNT, NOT_UTF8, STRAY_CR, TOO_LONG

    def malformed(self) -> np.ndarray:
        return self.problem != 0

    def problem_message(self, pos: int) -> str:
        """The one-line reason record `pos` is malformed (the exceptions file's message)."""
        code = int(self.problem[pos])
        if code == NOT_UTF8:
            return "the row is not valid UTF-8"
        if code == STRAY_CR:
            return "a carriage return outside quotes that does not end the line"
        if code == TOO_LONG:
            return f"the row is {int(self.ends[pos] - self.starts[pos])} bytes long; the limit is {MAX_RECORD_BYTES}"
        return f"expected {len(self.header)} fields, found {int(self.fields[pos])}"


def index_records(path: Path) -> RecordIndex:
    """Record boundaries, physical start lines and field counts of a CSV file, header first."""
    starts: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    commas: list[np.ndarray] = []
    parity = 0  # 1 while inside a quoted field, carried across chunks
    offset = 0  # global byte offset of the current chunk
    newlines_before = 0  # physical newlines seen before the current chunk
    rec_start, rec_line, rec_commas = 0, 1, 0  # the record still open at the chunk boundary
    stray_cr: list[np.ndarray] = []  # global offsets of CRs outside quotes not followed by LF
    cr_at_end = False  # the previous chunk ended in a CR outside quotes
    last_quote_line = 0  # physical line of the last quote seen (the opening one, if it never closes)
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(CHUNK)
            if not buf:
                break
            a = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(a == _NL)
            cm = np.flatnonzero(a == _COMMA)
            qt = np.flatnonzero(a == _QUOTE)
            cr = np.flatnonzero(a == _CR) if buf.find(b"\r") != -1 else nl[:0]
            if cr_at_end and a[0] != _NL:
                stray_cr.append(np.array([offset - 1]))
            if len(qt):
                last_quote_line = 1 + newlines_before + int(np.searchsorted(nl, qt[-1]))
            if len(qt) == 0 and parity == 0:
                # Fast path (most billing exports): no quotes, every newline and comma counts.
                rec_nl, rec_cm, rec_cr = nl, cm, cr
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
                rec_nl, rec_cm, rec_cr = outside(nl), outside(cm), outside(cr)
                parity = int(q_par[-1]) if len(qt) else parity
            # a CR outside quotes ends a line only right before its LF (CRLF); at a chunk's last byte
            # the next chunk decides
            lone = rec_cr[rec_cr + 1 < len(a)]
            lone = lone[a[lone + 1] != _NL]
            if len(lone):
                stray_cr.append(offset + lone)
            cr_at_end = bool(len(rec_cr)) and int(rec_cr[-1]) == len(a) - 1
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
    if parity == 1:
        line = _unclosed_record_line(path) or last_quote_line
        raise UnclosedQuote(f"a quoted field opened on line {line} is never closed "
                            "(it would swallow every row after it)")
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
    starts, ends = all_starts[1:], ends[1:]
    fields = all_fields[1:].astype(np.int64)
    problem = np.where(fields != len(header), FIELD_COUNT, 0).astype(np.int8)
    problem[_records_at(starts, _not_utf8(path, starts, ends))] = NOT_UTF8
    if stray_cr:
        problem[_records_at(starts, np.concatenate(stray_cr))] = STRAY_CR
    problem[(ends - starts) > MAX_RECORD_BYTES] = TOO_LONG
    return RecordIndex(header=header, header_end=int(all_starts[1]) if len(all_starts) > 1 else size,
                       starts=starts, ends=ends, lines=all_lines[1:].astype(np.int64), fields=fields,
                       problem=problem)


def _unclosed_record_line(path: Path) -> int | None:
    """The line where the record holding a never-closed quote starts. Quote parity alone names the
    file's last quote, which is often a later, well-quoted field: Python's csv module in strict mode
    stops at the first quote that cannot close a field (a quote must be followed by a comma, a line
    end or another quote), and the record it was reading started where the stray quote opened."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error:
            return start
    return None


def _records_at(starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The data record holding each byte offset (offsets in the header are left out)."""
    pos = np.searchsorted(starts, offsets, side="right") - 1
    return np.unique(pos[pos >= 0])


def _not_utf8(path: Path, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Byte offsets of the first invalid UTF-8 sequence of each record that has one.

    The file is decoded in slices that end at record ends (a character never spans two slices);
    Python's strict decoder runs in C, and the loop runs once per slice and once per bad record.
    """
    found: list[int] = []
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    with open(path, "rb") as fh:
        first = 0
        while first < len(starts):
            # the records whose ends fall within CHUNK bytes of this slice's start (at least one)
            last = max(first, int(np.searchsorted(ends, starts[first] + CHUNK, side="right")) - 1)
            fh.seek(int(starts[first]))
            buf = memoryview(fh.read(int(ends[last] - starts[first])))
            pos = 0
            while True:
                try:
                    str(buf[pos:], "utf-8")
                    break
                except UnicodeDecodeError as exc:
                    bad = int(starts[first]) + pos + exc.start
                    found.append(bad)
                    rec = int(np.searchsorted(starts, bad, side="right")) - 1
                    pos = int(ends[rec] - starts[first])  # go on after the bad record
            first = last + 1
    return np.array(found, dtype=np.int64)


#: reading by lines gives up (and the record index takes over) when more lines than this hold a
#: quote (those lines are parsed by the record index)
MAX_QUOTED_LINES = 10_000
#: ... or when the file holds more quote characters than this (a file quoted throughout)
MAX_QUOTES = 1_000_000


SCAN_BLOCK = 8 * 1024 * 1024  # small enough for the CPU's cache: each byte test is one fast pass


@dataclass
class LineScan:
    """What one pass over a file's bytes tells: its records can be its physical lines, and how many;
    and, per block read, where it starts and how many newlines come before it, so that a few lines
    can be found later by reading only their blocks (`quote_lines`, `physical_lines`)."""

    data_lines: int  # physical lines after the header (a last line without a line end counts)
    quotes: int  # quote characters after the header
    commas: int  # commas after the header
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64), repr=False)  # block starts, then EOF
    newlines_before: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64), repr=False)  # per block, then all
    quote_blocks: tuple[int, ...] = ()  # the blocks that hold a quote


def scan_lines(path: Path) -> LineScan | None:
    """Count a file's lines, quotes and commas, and check its line ends, block by block (numpy;
    memory stays bounded).

    None when a record might not be one physical line, or the file is quoted throughout: a header
    with an odd number of quotes (it spans lines), a CR that is not part of a CRLF line end when
    every line ends so, or more than `MAX_QUOTES` quotes. Blank lines and quoted newlines are not
    looked for here: the reader counts its records against `data_lines` (see ingest)."""
    with open(path, "rb") as fh:
        header = fh.readline()
    if header.count(b'"') % 2:
        return None  # a header that spans lines
    newlines = crs = crlfs = quotes = commas = 0
    prev = last = 0  # the byte before the block (for a CRLF split between blocks)
    size = 0
    offsets, newlines_before, quote_blocks = [0], [0], []
    buf = bytearray(SCAN_BLOCK)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            a = np.frombuffer(buf, dtype=np.uint8, count=n)
            newlines += int(np.count_nonzero(a == _NL))
            commas += int(np.count_nonzero(a == _COMMA))
            if buf.find(b"\r", 0, n) != -1:
                cr = a == _CR
                crs += int(np.count_nonzero(cr))
                crlfs += int(np.count_nonzero(cr[:-1] & (a[1:] == _NL)))
            crlfs += prev == _CR and a[0] == _NL
            if buf.find(b'"', 0, n) != -1:
                quotes += int(np.count_nonzero(a == _QUOTE))
                quote_blocks.append(len(offsets) - 1)
                if quotes > MAX_QUOTES:
                    return None
            prev = last = int(a[-1])
            size += n
            offsets.append(size)
            newlines_before.append(newlines)
    if crs and not (crs == crlfs == newlines):
        return None  # a lone CR, or LF and CRLF line ends mixed
    lines = newlines + (size > 0 and last != _NL)
    return LineScan(data_lines=max(lines - 1, 0), quotes=quotes - header.count(b'"'),
                    commas=commas - header.count(b","), offsets=np.array(offsets, dtype=np.int64),
                    newlines_before=np.array(newlines_before, dtype=np.int64), quote_blocks=tuple(quote_blocks))


def _read_block(fh, scan: LineScan, block: int) -> np.ndarray:
    fh.seek(int(scan.offsets[block]))
    data = fh.read(int(scan.offsets[block + 1] - scan.offsets[block]))
    return np.frombuffer(data, dtype=np.uint8)


def quote_lines(path: Path, scan: LineScan) -> np.ndarray:
    """The line number of each quote after the header, one entry per quote, in file order. Reads
    only the blocks `scan_lines` saw a quote in (a file without quotes is not read at all)."""
    found = [np.zeros(0, dtype=np.int64)]
    with open(path, "rb") as fh:
        for b in scan.quote_blocks:
            a = _read_block(fh, scan, b)
            # a byte's line = 1 + the newlines before it (those of earlier blocks, then this block's)
            newlines = np.flatnonzero(a == _NL)
            quotes = np.flatnonzero(a == _QUOTE)
            found.append(1 + scan.newlines_before[b] + np.searchsorted(newlines, quotes, side="left"))
    lines = np.concatenate(found).astype(np.int64)
    return lines[lines > 1]


def physical_lines(path: Path, scan: LineScan, numbers: Iterable[int]) -> list[bytes]:
    """The bytes of a few physical lines (1-based numbers, each within the file), without their
    line ends. Only the block where each starts is searched (once for all the lines starting in it)."""
    numbers = [int(n) for n in numbers]
    # line n starts one byte after the file's (n - 1)-th newline; line 1 at 0
    later = sorted({n for n in numbers if n > 1})
    kth = np.array([n - 1 for n in later], dtype=np.int64)
    # the k-th newline is in block b when newlines_before[b] < k <= newlines_before[b + 1]
    blocks = np.searchsorted(scan.newlines_before, kth, side="left") - 1
    start = {1: 0}
    with open(path, "rb") as fh:
        for b in np.unique(blocks).tolist():
            newlines = np.flatnonzero(_read_block(fh, scan, b) == _NL)
            for n, k in zip(np.array(later)[blocks == b].tolist(), kth[blocks == b].tolist()):
                start[n] = int(scan.offsets[b]) + int(newlines[k - int(scan.newlines_before[b]) - 1]) + 1
        out = []
        for n in numbers:
            fh.seek(start[n])
            out.append(fh.readline().removesuffix(b"\n").removesuffix(b"\r"))
    return out


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


def raw_records(path: Path, idx: RecordIndex, positions: np.ndarray, limit: int = 64 * 1024) -> list[str]:
    """The raw text of a few records (for quarantine messages: their record id), each cut to `limit` bytes."""
    out = []
    with open(path, "rb") as fh:
        for i in positions:
            fh.seek(int(idx.starts[i]))
            out.append(fh.read(min(limit, int(idx.ends[i] - idx.starts[i]))).decode("utf-8", "replace").rstrip("\r\n"))
    return out


def line_table(lines: np.ndarray) -> pa.Table:
    # from the array's buffer: pa.array(ndarray) imports pandas (seconds, see engine.ingest)
    values = np.ascontiguousarray(lines, dtype=np.int64)
    return pa.table({"row_number": pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])})
