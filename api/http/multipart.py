"""Multipart uploads streamed straight to the job's folder, one file per part.

Starlette's form parser keeps every part under 1 MB in memory until the request ends: a
1,000-slice study would sit whole in RAM. Here each ``files`` part of a multipart/form-data
upload, or each part of a STOW-RS multipart/related body, goes to disk as its bytes arrive,
under a name of our own (a client's file name never names a path).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import RawIOBase
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.errors import InvalidUpload

FIELD = "files"
MAX_PARTS = 100_000
DICOM = b"application/dicom"
# Form fields kept in memory beside the files (the submission's metadata), and their limit.
FIELDS = ("metadata",)
MAX_FIELD_BYTES = 16 * 1024


@dataclass
class FormParts:
    """What a multipart/form-data upload held: how many files, the small fields, and a digest
    of the files' bytes in order (the same for the same files, whatever the boundary)."""

    files: int
    fields: dict[str, bytes] = field(default_factory=dict)
    digest: str = ""


class _PartWriter:
    """Callbacks of the multipart parser: headers of each part, then its bytes to a file."""

    def __init__(self, folder: Path, field: str | None = FIELD, digest: bool = False) -> None:
        self.folder = folder
        self.field = field  # None: every part is a file (multipart/related)
        self.parts = 0
        self.ignored: set[str] = set()
        self._out: RawIOBase | None = None
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self.ended = False  # the closing boundary was read
        self.fields: dict[str, bytearray] = {}
        self._into: bytearray | None = None  # the field being read
        # Only for an idempotent submission: hashing costs CPU on the event loop.
        self.digest = hashlib.sha256() if digest else None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._end, "on_end": self._body_end,
        }

    def _body_end(self) -> None:
        self.ended = True

    def _begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.field is not None and name in FIELDS:
            if name in self.fields:
                raise InvalidUpload(f"more than one '{name}' part")
            self._into = self.fields[name] = bytearray()
            return
        if self.field is not None and name != self.field:
            self.ignored.add(name)
            return
        self.parts += 1
        if self.digest is not None:
            self.digest.update(b"\x00part\x00")
        if self.parts > MAX_PARTS:
            raise InvalidUpload(f"more than {MAX_PARTS} files in one upload")
        # Page-cache writes of the parser's 64 KiB chunks: cheaper than a thread hop each.
        # Unbuffered: the chunks go to the kernel as they are, without a copy in between.
        self._out = open(self.folder / f"part-{self.parts:05d}", "wb", buffering=0)  # noqa: SIM115

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            view = memoryview(data)[start:end]  # a slice of the bytes would copy them
            _write_all(self._out, view)
            if self.digest is not None:
                self.digest.update(view)
        elif self._into is not None:
            self._into += data[start:end]
            if len(self._into) > MAX_FIELD_BYTES:
                raise InvalidUpload(f"a form field over {MAX_FIELD_BYTES // 1024} KiB")

    def _end(self) -> None:
        self.close()

    def close(self) -> None:
        self._into = None
        if self._out is not None:
            self._out.close()
            self._out = None


def _write_all(out: RawIOBase, view: memoryview) -> None:
    """All of ``view`` to an unbuffered file (a raw write may take less than it is given)."""
    while view:
        written = out.write(view)
        view = view[written or 0:]


async def stream_parts(content_type: str, body: AsyncIterator[bytes], folder: Path,
                       digest: bool = False) -> FormParts:
    """Write every ``files`` part of a multipart/form-data body into ``folder``; keep the
    ``metadata`` field; say how many files there were and, asked to, digest them."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidUpload(
            "send multipart/form-data with one or more 'files' parts (DICOM files or zips)"
        )
    writer = _PartWriter(folder, digest=digest)
    await _parse(writer, boundary, body)
    if writer.parts == 0:
        extra = f" (found only: {', '.join(sorted(writer.ignored))})" if writer.ignored else ""
        raise InvalidUpload(f"the upload holds no 'files' parts{extra}")
    return FormParts(writer.parts, {k: bytes(v) for k, v in writer.fields.items()},
                     "" if writer.digest is None else writer.digest.hexdigest())


async def stream_related_parts(content_type: str, body: AsyncIterator[bytes],
                               folder: Path) -> int:
    """Write every part of a STOW-RS ``multipart/related; type="application/dicom"`` body
    into ``folder`` (PS3.18 10.5.1.1); count them. Each part is taken for a DICOM instance:
    what it really holds is for the header pass to say, instance by instance."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/related" or not boundary or options.get(b"type", DICOM).lower() != DICOM:
        raise InvalidUpload(
            'send multipart/related; type="application/dicom" with one DICOM instance a part'
        )
    writer = _PartWriter(folder, field=None)
    await _parse(writer, boundary, body)
    if writer.parts == 0:
        raise InvalidUpload("the body holds no parts")
    return writer.parts


async def _parse(writer: _PartWriter, boundary: bytes, body: AsyncIterator[bytes]) -> None:
    parser = MultipartParser(boundary, writer.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidUpload(f"the multipart body is malformed: {exc}") from exc
    finally:
        writer.close()
    if not writer.ended:
        # A body cut short (a dropped connection, a proxy's limit) must not pass for a whole
        # study with its last slices missing.
        raise InvalidUpload(
            "the multipart body ends before its closing boundary: the upload was cut short; "
            "send it again"
        )
