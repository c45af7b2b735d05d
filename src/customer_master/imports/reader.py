"""Streaming CSV reading: encoding, delimiter, header, and records with their physical line numbers.

A file that cannot be read as CSV at all is rejected whole (`FileRejected`, a 422 naming the line);
everything else is left to the per-row validation in `rows.py`.
"""

import codecs
import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from customer_master.errors import ValidationFailed

DELIMITERS = (",", ";", "\t")
CHUNK_BYTES = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\x0b\x0c"


class FileRejected(ValidationFailed):
    """The file is not a CSV we can read: rejected whole, nothing imported, nothing recorded."""

    def __init__(self, reason: str, line: int | None = None, field: str | None = None) -> None:
        message = f"Line {line}: {reason}" if line is not None else reason
        super().__init__([{"field": field, "reason": reason, "line": line}], message=message)
        self.reason = reason
        self.line = line


def _undefined_cp1252_as_latin1(error: UnicodeError) -> tuple[str, int]:
    """Windows-1252 leaves five bytes undefined; read them as the C1 controls they are in Latin-1."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("cm-cp1252-latin1", _undefined_cp1252_as_latin1)


def detect_encoding(binary: BinaryIO) -> str:
    """`utf-8-sig` (BOM), `utf-8`, or `windows-1252` when any byte sequence is not UTF-8.

    Decided from the whole file in one streaming pass (a German umlaut may first appear on the last
    line), which also finds an empty or whitespace-only file. Leaves the stream at its start.
    """
    binary.seek(0)
    head = binary.read(len(UTF8_BOM))
    has_bom = head == UTF8_BOM
    decoder = codecs.getincrementaldecoder("utf-8")()
    is_utf8 = True
    has_content = False
    chunk = b"" if has_bom else head
    while True:
        if chunk:
            has_content = has_content or bool(chunk.strip(_WHITESPACE))
            if is_utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    is_utf8 = False
            if has_content and not is_utf8:
                break
        chunk = binary.read(CHUNK_BYTES)
        if not chunk:
            break
    if is_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    binary.seek(0)
    if not has_content:
        raise FileRejected("the file is empty: it needs a header row (name, default_currency, …)", line=None)
    if is_utf8:
        return "utf-8-sig" if has_bom else "utf-8"
    return "windows-1252"


def detect_delimiter(header_line: str) -> str:
    """The most frequent of `,` `;` and tab on the header line (`,` when there is none)."""
    counts = [(header_line.count(delimiter), -index, delimiter) for index, delimiter in enumerate(DELIMITERS)]
    count, _, delimiter = max(counts)
    return delimiter if count else ","


class CsvReader:
    """Reads one CSV file as a stream of records; memory stays flat however large the file is."""

    def __init__(self, binary: BinaryIO, *, max_line_length: int) -> None:
        self.max_line_length = max_line_length
        self._binary = binary
        self.encoding_name = detect_encoding(binary)
        self.encoding = "windows-1252" if self.encoding_name == "windows-1252" else "utf-8"
        errors = "cm-cp1252-latin1" if self.encoding == "windows-1252" else "strict"
        self._text = io.TextIOWrapper(binary, encoding=self.encoding_name, errors=errors, newline="")
        self.lines_read = 0
        self._lines = self._physical_lines()
        first = self._first_non_blank_line()
        self.header_line_number = self.lines_read
        self.delimiter = detect_delimiter(first)
        self._csv = csv.reader(_prepend(first, self._lines), delimiter=self.delimiter, strict=True)
        self.header = self._header()

    @property
    def bytes_read(self) -> int:
        """How far into the file reading has come (for progress bars)."""
        try:
            return self._binary.tell()
        except (OSError, ValueError):
            return 0

    def _physical_lines(self) -> Iterator[str]:
        """The file's lines with their endings; a NUL byte or an over-long line rejects the file."""
        limit = self.max_line_length
        readline = self._text.readline
        while True:
            line = readline(limit + 2)  # room for "\r\n", so a line of exactly `limit` passes
            if not line:
                return
            self.lines_read += 1
            if len(line) > limit and len(line.rstrip("\r\n")) > limit:
                raise FileRejected(f"the line is longer than {limit} characters", line=self.lines_read)
            if "\x00" in line:
                raise FileRejected("the file contains a NUL byte: it is not a CSV text file", line=self.lines_read)
            yield line

    def _first_non_blank_line(self) -> str:
        for line in self._lines:
            if line.strip():
                return line
        raise FileRejected("the file is empty: it needs a header row (name, default_currency, …)")

    def _header(self) -> list[str]:
        try:
            names = next(self._csv)
        except csv.Error as exc:
            raise self._malformed(exc, self.header_line_number) from None
        names = [name.strip() for name in names]
        if names:
            # A BOM the decoder did not take (a Windows-1252 file that starts with one).
            names[0] = names[0].removeprefix("\ufeff").removeprefix("ï»¿").strip()
        return names

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """`(line, fields)` for each record after the header; `line` is where the record starts."""
        width = len(self.header)
        reader = self._csv
        while True:
            start = self.lines_read + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self._malformed(exc, start) from None
            if not fields or not "".join(fields).strip():
                continue  # a blank line, or one of only delimiters: no record
            if len(fields) > width:
                raise FileRejected(
                    f"the record has {len(fields)} fields but the header has {width}"
                    " (a delimiter inside a value needs quotes)",
                    line=start,
                )
            yield start, fields

    def _malformed(self, exc: csv.Error, start: int) -> FileRejected:
        text = str(exc)
        if "unexpected end of data" in text:
            return FileRejected(
                "unterminated quoted field: the quote opened in the record starting here is never closed", line=start
            )
        if "field larger than field limit" in text:
            return FileRejected(f"a field is longer than {self.max_line_length} characters", line=start)
        return FileRejected(
            "malformed quoted field: a closing quote must be followed by the delimiter or the end of the line"
            f" ({text})",
            line=self.lines_read,
        )


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def ensure_field_size_limit(max_line_length: int) -> None:
    """The csv module's per-field limit (process-wide) must allow a field as long as a line may be."""
    if csv.field_size_limit() < max_line_length:
        csv.field_size_limit(max_line_length)
