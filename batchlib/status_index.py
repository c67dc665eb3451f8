"""The status index: what the last runs found out about every input, compact and fast to read.

``batchlib/<JobName>.index`` is the machine's half of a job's status (the
``.status`` file is the people's half: a summary, the problems and what the
last run did). It is a cache of the completion records, never trusted over
them, with one line per input::

    "<key>"<TAB><fingerprint or ->"<TAB><signature digest><TAB>[outputs]<TAB>{entry}

* the *fingerprint* digests everything an "up to date" decision read (the job's
  parameter hash and version, the rerun triggers, the input signature and the
  identity ``(inode, size, mtime_ns)`` of every output container and file
  beside it), taken when the input was found or made up to date: while it is
  unchanged the input is up to date without opening anything, so a rerun
  with nothing to do costs a ``stat`` per file;
* the *signature digest* and *outputs* let planning reuse the outputs of an
  unchanged input without parsing its entry;
* the *entry* (state, record summary, stamps, error, ...) is parsed only for
  inputs whose fingerprint no longer matches.

Results are appended as they stream in (a killed run loses nothing it
recorded; a torn last line is ignored) and the file is rewritten, atomically,
at the end of a run that changed anything. A run with nothing to do writes
nothing here. A missing or unreadable index is rebuilt from the containers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any
from pathlib import Path

INDEX_SCHEMA = "batchlib-status-index-1"

logger = logging.getLogger("Workflow.status")


def digest(value) -> str:
    """Short digest of a value made of dicts, lists, strings and numbers (fingerprints,
    signature digests).

    Of its ``repr``, which is several times faster than JSON and as stable for
    the values this is given (built the same way in every run; a value built
    in another order only costs one slow check).
    """
    return digest_text(repr(value))


def digest_text(text: str) -> str:
    """:func:`digest` of a value whose ``repr`` is ``text`` (built from parts that are
    the same for many values, see :class:`batchlib.planning.Fingerprints`)."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _row_line(key, fp, sig, outputs_text, entry_text) -> bytes:
    # json.dumps escapes tabs and newlines, so neither can occur inside a field
    return f"{json.dumps(key)}\t{fp or '-'}\t{sig or '-'}\t{outputs_text}\t{entry_text}\n".encode()


class StatusIndex:
    """The rows of one job's index: ``key -> [fingerprint, signature digest, outputs text,
    entry, has warnings]``.

    An entry is its JSON text when this run set it, else where it lies in the
    file, ``(offset, length)``: read and parsed only when asked for, so that
    100,000 rows cost little memory and no time when nothing changed.
    """

    def __init__(self, path, header: dict | None = None):
        self.path = Path(path)
        self.header = {"schema": INDEX_SCHEMA, **(header or {})}
        self.rows: dict = {}
        self.seen: set = set()
        self._appended = 0
        self._dirty = False
        self._fh: Any = None  # appending
        self._rfh: Any = None  # reading entries

    # -- reading ------------------------------------------------------------
    def load(self) -> bool:
        """Read the index; ``False`` (with a warning) when it is unusable."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return False
        try:
            first = f.readline()
            head = json.loads(first)
            if not isinstance(head, dict) or head.get("schema") != INDEX_SCHEMA:
                raise ValueError(f"not a {INDEX_SCHEMA} file")
            rows = {}
            offset = len(first)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # torn by a kill while appending: the rest is unknown
                k, fp, sig, outs, entry = line[:-1].split(b"\t", 4)
                key = k[1:-1].decode() if b"\\" not in k else json.loads(k)
                start = offset + len(line) - 1 - len(entry)
                rows[key] = [None if fp == b"-" else fp.decode(), None if sig == b"-" else sig.decode(),
                             outs.decode(), (start, len(entry)), b'"warnings":' in entry]
                offset += len(line)
        except (ValueError, OSError, UnicodeDecodeError) as e:
            f.close()
            logger.warning("%s is unreadable (%s); rebuilding it from the completion records",
                           self.path, e)
            self._dirty = True
            return False
        self._rfh = f
        self.rows = rows
        return True

    def fingerprint(self, key) -> str | None:
        row = self.rows.get(key)
        return row[0] if row else None

    def with_warnings(self, keys) -> list:
        """Those of ``keys`` whose entries hold warnings."""
        rows = self.rows
        return [k for k in keys if k in rows and rows[k][4]]

    def outputs(self, key, signature_digest) -> list | None:
        """The recorded outputs of ``key`` when its input signature is unchanged."""
        row = self.rows.get(key)
        if not row or row[1] != signature_digest:
            return None
        return _outputs(row[2])

    def fingerprint_and_outputs(self, key) -> tuple:
        """``(fingerprint, outputs)`` of ``key`` (``(None, None)`` without a fingerprint):
        the outputs it had when the fingerprint was taken."""
        row = self.rows.get(key)
        if not row or row[0] is None:
            return None, None
        try:
            return row[0], _outputs(row[2])
        except ValueError:  # a damaged line: as without a fingerprint
            return None, None

    def _entry_text(self, row) -> str:
        if isinstance(row[3], str):
            return row[3]
        start, length = row[3]
        if self._rfh is None:
            self._rfh = open(self.path, "rb")
        self._rfh.seek(start)
        return self._rfh.read(length).decode()

    def entry(self, key) -> dict | None:
        row = self.rows.get(key)
        if not row:
            return None
        try:
            entry = json.loads(self._entry_text(row))
        except (ValueError, OSError, UnicodeDecodeError):
            return None
        return entry if isinstance(entry, dict) else None

    def items(self):
        """``(key, entry)`` of every row (parses them all)."""
        for key in list(self.rows):
            entry = self.entry(key)
            if entry is not None:
                yield key, entry

    # -- writing ------------------------------------------------------------
    def keep(self, key) -> None:
        """The row of ``key`` stays as it is (the input was found unchanged)."""
        self.seen.add(key)

    def add_text(self, key, entry_text: str, outputs_text: str = "[]") -> None:
        """A row from an entry's JSON text, without fingerprint (an earlier version's status)."""
        self.rows[key] = [None, None, outputs_text, entry_text, '"warnings":' in entry_text]

    def put(self, key, entry: dict, fingerprint=None, signature=None, append=False) -> None:
        """Set the row of ``key``; ``append``: also write it to the file now."""
        text = json.dumps(entry, separators=(",", ":"), default=str)
        outputs = json.dumps(entry.get("outputs") or [])
        sig = digest(signature) if signature is not None else None
        self.rows[key] = [fingerprint, sig, outputs, text, bool(entry.get("warnings"))]
        self.seen.add(key)
        self._dirty = True
        if append:
            self._append(_row_line(key, fingerprint, sig, outputs, text))

    def _append(self, line: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")
            if self._fh.tell() == 0:  # a new file: the header first
                self._fh.write(json.dumps(self.header).encode() + b"\n")
        self._fh.write(line)
        self._appended += 1

    def flush(self) -> None:
        """Push the appended lines to the file (they are buffered until then)."""
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        for fh in (self._fh, self._rfh):
            if fh is not None:
                fh.close()
        self._fh = self._rfh = None

    def write(self) -> None:
        """Rewrite the index (atomically) with the rows seen in this run."""
        from .io.files import atomic_path

        if self._fh is not None:
            self._fh.close()
            self._fh = None
        rows = {k: v for k, v in self.rows.items() if k in self.seen}
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            head = json.dumps(self.header).encode() + b"\n"
            f.write(head)
            offset = len(head)
            for key, row in rows.items():
                text = self._entry_text(row)  # from the old file, while it is still there
                line = _row_line(key, row[0], row[1], row[2], text)
                row[3] = (offset + len(line) - 1 - len(text.encode()), len(text.encode()))
                f.write(line)
                offset += len(line)
        if self._rfh is not None:
            self._rfh.close()
        self._rfh = open(self.path, "rb")  # the entries are read from the new file now
        self.rows = rows
        self._dirty = False
        self._appended = 0

    def finish(self) -> None:
        """End of a run: rewrite the file if anything changed or a row was dropped."""
        if self._dirty or self._appended or len(self.seen) != len(self.rows) \
                or not self.path.exists():
            self.write()
        self.close()


def _outputs(text) -> list:
    """The list of outputs of a row."""
    if text.startswith('["') and text.endswith('"]') and "\\" not in text and '"' not in text[2:-2]:
        return [text[2:-2]]  # one plain name, the usual case: no JSON parser needed
    return json.loads(text)


def file_identity(path) -> list | None:
    """``[inode, size, mtime_ns]`` of a file, ``None`` when it is missing."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]
