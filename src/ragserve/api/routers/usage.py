"""``GET /v1/usage``: jobs and tokens per tenant and UTC day (see ``ragserve.jobs.usage``).

A tenant's key reads its own tenant's rows; an admin key reads every tenant's (each row names
its tenant), or one tenant's with ``X-Ragserve-Tenant``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from ragserve.api.auth import Caller
from ragserve.api.deps import State
from ragserve.api.schemas import UNAVAILABLE, UsageList
from ragserve.jobs.usage import usage_rows

router = APIRouter(prefix="/v1", tags=["usage"], responses={**UNAVAILABLE})

DEFAULT_DAYS: Final = 30
"""Days shown when ``from`` is left out (ending at ``to``)."""
MAX_DAYS: Final = 366
"""Longest range of one request, so that an answer stays small."""


@router.get(
    "/usage",
    summary="Jobs and tokens per day of the caller's tenant (an admin: of every tenant)",
)
async def get_usage(
    state: State,
    caller: Caller,
    first: Annotated[
        dt.date | None,
        Query(alias="from", description="First UTC day (YYYY-MM-DD); default: 30 days before to"),
    ] = None,
    last: Annotated[
        dt.date | None, Query(alias="to", description="Last UTC day, included; default: today")
    ] = None,
) -> UsageList:
    last = last or dt.datetime.now(dt.UTC).date()
    first = first or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise invalid_from(first, f"from ({first}) is after to ({last})")
    if (last - first).days >= MAX_DAYS:
        raise invalid_from(first, f"from..to spans more than {MAX_DAYS} days; ask for less")
    async with state.services.db.connection() as conn:
        rows = await usage_rows(conn, caller.scope, first, last)
    return UsageList.model_validate({"usage": rows})


def invalid_from(first: dt.date, message: str) -> RequestValidationError:
    """A ``422`` naming the ``from`` parameter, shaped as FastAPI's own validation errors."""
    error = {"loc": ("query", "from"), "msg": message, "type": "value_error", "input": str(first)}
    return RequestValidationError([error])
