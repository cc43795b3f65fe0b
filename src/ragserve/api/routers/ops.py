"""``/v1/ops``: what operators watch — queues, workers, dead letters, throughput — read from
the database (no Prometheus needed; every replica answers the same).

A tenant's key sees its own jobs' counts, dead letters, running jobs and throughput; the
queues' depths and the live workers are shared and shown to every caller; an admin key without
``X-Ragserve-Tenant`` sees every tenant's jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ragserve.api.auth import Caller
from ragserve.api.deps import Ops, State
from ragserve.api.schemas import UNAVAILABLE, OpsOverview, QueueState, Throughput

router = APIRouter(prefix="/v1/ops", tags=["operations"], responses={**UNAVAILABLE})


@router.get("/overview", summary="Queues, job counts, live workers and their jobs, dead letters")
async def overview(
    ops: Ops,
    caller: Caller,
    state: State,
    dead_letters: Annotated[
        int, Query(ge=0, le=200, description="How many of the newest failed jobs to include.")
    ] = 20,
) -> OpsOverview:
    # Every queue of the apps this process serves shows, even while empty (as in the metrics).
    read = await ops.overview(dead_letters, state.services.apps.queues(), tenant=caller.scope)
    queues = [
        QueueState(name=name, depth=q.depth, running=q.running, oldest_s=q.oldest_s)
        for name, q in sorted(read.queues.items())
    ]
    return OpsOverview.model_validate(
        {
            "read_at": read.read_at,
            "queues": queues,
            "statuses": read.statuses,
            "workers": read.workers,
            "dead_letters": read.dead_letters,
        }
    )


@router.get("/throughput", summary="Jobs submitted and finished, and latencies, per minute")
async def throughput(
    ops: Ops,
    caller: Caller,
    minutes: Annotated[int, Query(ge=1, le=1440, description="How far back; 60 = last hour.")] = 60,
) -> Throughput:
    buckets = await ops.throughput(minutes, tenant=caller.scope)
    return Throughput.model_validate({"minutes": minutes, "buckets": buckets})
