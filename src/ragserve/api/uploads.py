"""Read an upload request within its limits, never holding more than the limit in memory.

A body announced larger than ``RAGSERVE_MAX_UPLOAD_MB`` is refused from its ``Content-Length``
before a byte is read; a body without one (chunked) is counted while it streams in and cut once
over the limit. Multipart files are spooled to disk by Starlette's parser above 1 MB each, so
memory holds at most the limit when the accepted files are finally read for the job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ragserve.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ragserve.jobs.models import IngestRequest, storable
from ragserve.jobs.store import UploadedFile
from ragserve.kb.loaders import SUPPORTED_EXTENSIONS
from ragserve.settings import Settings

_MB = 1024 * 1024


def upload_limit_bytes(settings: Settings) -> int:
    return int(settings.max_upload_mb * _MB)


def _too_large(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body exceeds RAGSERVE_MAX_UPLOAD_MB ({settings.max_upload_mb:g} MB)"
    )


def check_content_length(request: Request, settings: Settings) -> None:
    """Refuse a body announced too large, before reading it."""
    announced = request.headers.get("content-length")
    if announced is None:
        return
    try:
        length = int(announced)
    except ValueError:
        raise InvalidInput("Content-Length must be an integer") from None
    if length > upload_limit_bytes(settings):
        raise _too_large(settings)


async def bounded_stream(request: Request, settings: Settings) -> AsyncGenerator[bytes]:
    """The request body in chunks, cut with :class:`PayloadTooLarge` once over the limit."""
    limit = upload_limit_bytes(settings)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(settings)
        yield chunk


def check_supported(filename: str) -> None:
    """Refuse, at submission, a file no loader reads."""
    extension = Path(filename).suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        shown = f"'{extension}'" if extension else "(no extension)"
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise UnsupportedMediaType(
            f"file {filename!r}: unsupported file type {shown}; supported: {supported}"
        )


def _too_many_files(count: int | str, settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"too many files ({count}); RAGSERVE_MAX_FILES_PER_UPLOAD is "
        f"{settings.max_files_per_upload}"
    )


async def files_from_form(request: Request, settings: Settings) -> list[UploadedFile]:
    """The files of a multipart upload (field ``files``) and the shared ``metadata`` field."""
    check_content_length(request, settings)
    parser = MultiPartParser(
        request.headers,
        bounded_stream(request, settings),
        max_files=settings.max_files_per_upload,
        max_fields=100,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise _too_many_files(f"more than {settings.max_files_per_upload}", settings) from None
        raise InvalidInput(f"malformed multipart body: {exc.message}") from None
    try:
        return await _read_form(form)
    finally:
        await form.close()


async def _read_form(form: FormData) -> list[UploadedFile]:
    metadata: dict[str, Any] = {}
    if raw := form.get("metadata"):
        try:
            metadata = json.loads(str(raw))
        except ValueError:
            raise InvalidInput("form field 'metadata' must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise InvalidInput("form field 'metadata' must be a JSON object")
    uploads = [v for v in form.getlist("files") if isinstance(v, UploadFile)]
    if not uploads:
        raise InvalidInput("multipart field 'files' must hold at least one file")
    names = [u.filename or f"upload-{i}" for i, u in enumerate(uploads)]
    try:
        storable([names, metadata])
    except ValueError as exc:
        raise InvalidInput(f"file names and metadata: {exc}") from None
    for name in names:
        check_supported(name)
    return [
        UploadedFile(source=name, data=await u.read(), metadata=metadata)
        for name, u in zip(names, uploads, strict=True)
    ]


async def files_from_json(request: Request, settings: Settings) -> list[UploadedFile]:
    """The documents of a JSON upload, each within ``RAGSERVE_MAX_DOCUMENT_CHARS``."""
    check_content_length(request, settings)
    body = b"".join([chunk async for chunk in bounded_stream(request, settings)])
    parsed = IngestRequest.model_validate_json(body)  # ValidationError: the caller's 422
    if len(parsed.documents) > settings.max_files_per_upload:
        raise _too_many_files(len(parsed.documents), settings)
    for document in parsed.documents:
        if len(document.text) > settings.max_document_chars:
            raise PayloadTooLarge(
                f"document {document.source!r} has {len(document.text)} characters; "
                f"RAGSERVE_MAX_DOCUMENT_CHARS is {settings.max_document_chars}"
            )
    return [
        UploadedFile(source=d.source, text=d.text, metadata=d.metadata) for d in parsed.documents
    ]
