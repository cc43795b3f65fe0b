"""``/v1/collections``: list collections and documents, upload (as ingest jobs), delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ragserve.api.auth import Caller
from ragserve.api.deps import Jobs, Kb, State
from ragserve.api.schemas import (
    UNAVAILABLE,
    Accepted,
    CollectionList,
    DocumentList,
    SearchRequest,
    SearchResults,
    Source,
    error_doc,
)
from ragserve.api.submissions import ACCEPTED_DOCS, IdempotencyKey, accepted
from ragserve.api.uploads import files_from_form, files_from_json
from ragserve.errors import InvalidInput
from ragserve.names import check_collection_name

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses={**UNAVAILABLE})


@router.get("", summary="List collections")
async def list_collections(kb: Kb, caller: Caller) -> CollectionList:
    collections = await kb.list_collections(tenant=caller.scope)
    return CollectionList.model_validate({"collections": collections})


@router.get(
    "/{name}/documents",
    responses={404: error_doc("No such collection")},
    summary="List the documents of a collection",
)
async def list_documents(name: str, kb: Kb, caller: Caller) -> DocumentList:
    check_collection_name(name)
    documents = await kb.list_documents(name, tenant=caller.tenant)
    return DocumentList.model_validate({"collection": name, "documents": documents})


@router.delete(
    "/{name}/documents/{document_id}",
    status_code=204,
    responses={404: error_doc("No such document in this collection")},
    summary="Delete a document and its chunks",
)
async def delete_document(name: str, document_id: str, kb: Kb, caller: Caller) -> Response:
    check_collection_name(name)
    await kb.delete_document(name, document_id, tenant=caller.tenant)
    return Response(status_code=204)


@router.post(
    "/{name}/documents",
    status_code=202,
    response_model=Accepted,
    responses={
        **ACCEPTED_DOCS,
        413: error_doc("Over RAGSERVE_MAX_UPLOAD_MB, _MAX_FILES_PER_UPLOAD or _MAX_DOCUMENT_CHARS"),
        415: error_doc("A file of a type no loader reads"),
    },
    summary="Add documents: multipart files (field 'files'), or JSON {'documents': [...]}",
)
async def add_documents(
    name: str,
    request: Request,
    jobs: Jobs,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    check_collection_name(name)
    content_type = request.headers.get("content-type", "")
    settings = state.services.settings
    if content_type.startswith("multipart/form-data"):
        files = await files_from_form(request, settings)
    elif content_type.startswith("application/json"):
        try:
            files = await files_from_json(request, settings)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False), body=None) from None
    else:
        raise InvalidInput("send multipart/form-data files or application/json documents")
    submission = await jobs.submit_ingest(name, files, idempotency_key, tenant=caller.tenant)
    return accepted(submission, state)


@router.post(
    "/{name}/search",
    responses={404: error_doc("No such collection")},
    summary="Retrieve the passages best matching a query (no answer, no job)",
)
async def search(name: str, body: SearchRequest, state: State, caller: Caller) -> SearchResults:
    check_collection_name(name)
    chunks = await state.services.retriever.retrieve(
        body.query,
        tenant=caller.tenant,
        collection=name,
        top_k=body.top_k,
        document_scope=body.document_scope,
        filters=body.filters,
    )
    return SearchResults(results=[Source.model_validate(c.as_source()) for c in chunks])
