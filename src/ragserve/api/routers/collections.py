"""``/v1/collections``: list collections and documents, upload (as ingest jobs), delete."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ragserve.api.deps import Jobs, Kb, State
from ragserve.api.schemas import UNAVAILABLE, Accepted, CollectionList, DocumentList, error_doc
from ragserve.api.submissions import ACCEPTED_DOCS, IdempotencyKey, accepted
from ragserve.errors import InvalidInput
from ragserve.jobs.models import IngestRequest
from ragserve.jobs.store import UploadedFile
from ragserve.names import check_collection_name

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses={**UNAVAILABLE})


@router.get("", summary="List collections")
async def list_collections(kb: Kb) -> CollectionList:
    return CollectionList.model_validate({"collections": await kb.list_collections()})


@router.get(
    "/{name}/documents",
    responses={404: error_doc("No such collection")},
    summary="List the documents of a collection",
)
async def list_documents(name: str, kb: Kb) -> DocumentList:
    check_collection_name(name)
    documents = await kb.list_documents(name)
    return DocumentList.model_validate({"collection": name, "documents": documents})


@router.delete(
    "/{name}/documents/{document_id}",
    status_code=204,
    responses={404: error_doc("No such document in this collection")},
    summary="Delete a document and its chunks",
)
async def delete_document(name: str, document_id: str, kb: Kb) -> Response:
    check_collection_name(name)
    await kb.delete_document(name, document_id)
    return Response(status_code=204)


@router.post(
    "/{name}/documents",
    status_code=202,
    response_model=Accepted,
    responses={**ACCEPTED_DOCS},
    summary="Add documents: multipart files (field 'files'), or JSON {'documents': [...]}",
)
async def add_documents(
    name: str,
    request: Request,
    jobs: Jobs,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    check_collection_name(name)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        files = await _files_from_form(request)
    elif content_type.startswith("application/json"):
        files = await _files_from_json(request)
    else:
        raise InvalidInput("send multipart/form-data files or application/json documents")
    return accepted(await jobs.submit_ingest(name, files, idempotency_key), state)


async def _files_from_form(request: Request) -> list[UploadedFile]:
    form = await request.form()
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
    return [
        UploadedFile(source=u.filename or f"upload-{i}", data=await u.read(), metadata=metadata)
        for i, u in enumerate(uploads)
    ]


async def _files_from_json(request: Request) -> list[UploadedFile]:
    try:
        body = IngestRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False), body=None) from None
    return [UploadedFile(source=d.source, text=d.text, metadata=d.metadata) for d in body.documents]
