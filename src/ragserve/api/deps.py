"""Dependencies: routers get the process's objects from ``app.state`` through ``Depends``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragserve.api.state import AppState
from ragserve.jobs.operations import Operations
from ragserve.jobs.service import JobService
from ragserve.jobs.usage import DEFAULT_TENANT
from ragserve.kb.store import KnowledgeStore


async def get_state(request: Request) -> AppState:
    state = request.app.state.ragserve
    assert isinstance(state, AppState)  # set by the lifespan before the first request
    return state


async def get_jobs(state: Annotated[AppState, Depends(get_state)]) -> JobService:
    return state.jobs


async def get_kb(state: Annotated[AppState, Depends(get_state)]) -> KnowledgeStore:
    return state.services.store


async def get_operations(state: Annotated[AppState, Depends(get_state)]) -> Operations:
    return Operations(state.services.db)


State = Annotated[AppState, Depends(get_state)]
Jobs = Annotated[JobService, Depends(get_jobs)]
Kb = Annotated[KnowledgeStore, Depends(get_kb)]
Ops = Annotated[Operations, Depends(get_operations)]


async def current_tenant() -> str:
    """Whose request this is. Without API keys every request is the default tenant's; an
    authentication dependency that knows the caller's key replaces this one."""
    return DEFAULT_TENANT


Tenant = Annotated[str, Depends(current_tenant)]
