"""Every SQL statement of the job store, by name, with named parameters (``%(name)s``).

One module-level constant per statement, rather than a ``queries.sql`` file of ``-- name:``
sections (procrastinate's pattern): several statements share fragments that must not drift
apart (the job columns, and above all the in-flight condition below, which is also the
predicate of a unique index), and in Python they are written once and composed. Parameters are
named, so a statement and its values cannot fall out of step. The migrations stay plain SQL
files: they are versioned and never change once released.
"""

from __future__ import annotations

from typing import Final

from ragserve.jobs.usage import COUNT_SUCCEEDED_JOB
from ragserve.kb.store import collection_key_sql

_JOB_FIELDS = (
    "id, tenant, kind, status, collection, query, request, attempts, max_attempts, cached,"
    " cache_key, idempotency_key, request_hash, result, error,"
    " created_at, started_at, finished_at, app"
)

JOB_COLUMNS: Final = (
    f"{_JOB_FIELDS}, (SELECT a.version FROM job_attempts a"
    " WHERE a.job_id = jobs.id AND a.attempt = jobs.attempts) AS version"
)
"""The columns of a job as the API shows it. ``version`` is that of the latest attempt: null
while the job was never run, and null for an attempt of a release older than migration 0003
(which records no version), rather than the stale version of an earlier attempt."""

INSERTED_JOB_COLUMNS: Final = f"{_JOB_FIELDS}, NULL::text AS version"
"""The same, returned by the inserts of new jobs, which never ran: no lookup on the hot path."""

IN_FLIGHT: Final = (
    "status IN ('queued', 'running') AND cache_key IS NOT NULL AND idempotency_key IS NULL"
)
"""A job whose computation identical questions share (coalescing).

It is the predicate of the unique index ``jobs_inflight_cache_key_idx`` (migration 0002), so
``ON CONFLICT (cache_key) WHERE <it>`` finds that index; ``tests/jobs/test_queries.py`` checks
that PostgreSQL reads both the same way.
"""

_NEW_JOB_COLUMNS = (
    "tenant, kind, collection, query, request, request_hash, max_attempts, cache_key,"
    " idempotency_key, app"
)
_NEW_JOB_VALUES = (
    "%(tenant)s, %(kind)s, %(collection)s, %(query)s, %(request)s, %(request_hash)s,"
    " %(max_attempts)s, %(cache_key)s, %(idempotency_key)s, %(app)s"
)

# -- creating ------------------------------------------------------------------------------

INSERT_QUEUED_JOB: Final = (
    "WITH job AS ("
    f" INSERT INTO jobs ({_NEW_JOB_COLUMNS}, event_seq) VALUES ({_NEW_JOB_VALUES}, 1)"
    f" ON CONFLICT (cache_key) WHERE {IN_FLIGHT} DO NOTHING"
    f" RETURNING {INSERTED_JOB_COLUMNS}),"
    " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
    " SELECT id, 1, 0, 'status', %(first_event)s FROM job)"
    " SELECT * FROM job"
)
"""A queued job and its first event; no row when an identical question is in flight."""

INSERT_CACHED_JOB: Final = (
    f"INSERT INTO jobs ({_NEW_JOB_COLUMNS}, status, cached, result, started_at, finished_at)"
    f" VALUES ({_NEW_JOB_VALUES}, 'succeeded', true, %(result)s, now(), now())"
    f" RETURNING {INSERTED_JOB_COLUMNS}"
)

INSERT_FILE: Final = (
    "INSERT INTO job_files (job_id, ordinal, source, data, text, metadata)"
    " VALUES (%(job_id)s, %(ordinal)s, %(source)s, %(data)s, %(text)s, %(metadata)s)"
)

# -- reading -------------------------------------------------------------------------------

SELECT_FILES: Final = (
    "SELECT source, data, text, metadata FROM job_files WHERE job_id = %(job_id)s ORDER BY ordinal"
)


def tenant_scope(column: str = "tenant") -> str:
    """A condition: the row's ``column`` is ``%(tenant)s``, or ``%(tenant)s`` is null (an
    admin reading every tenant's)."""
    return f"(%(tenant)s::text IS NULL OR {column} = %(tenant)s)"


_IN_SCOPE = tenant_scope()
"""The job belongs to ``tenant``, or ``tenant`` is null (an admin reading every tenant's)."""

SELECT_JOB: Final = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %(id)s AND {_IN_SCOPE}"

SELECT_JOB_BY_IDEMPOTENCY_KEY: Final = (
    f"SELECT {JOB_COLUMNS}, k.body_hash FROM jobs JOIN (SELECT job_id, body_hash"
    " FROM job_idempotency_keys WHERE key = %(idempotency_key)s) k ON k.job_id = jobs.id"
    " WHERE jobs.tenant = %(tenant)s"
    " UNION ALL"  # keys stored on the job row itself, before migration 0005
    f" SELECT {JOB_COLUMNS}, request_hash FROM jobs WHERE idempotency_key = %(idempotency_key)s"
    " AND tenant = %(tenant)s"
    " LIMIT 1"
)
"""The job of ``tenant`` an ``Idempotency-Key`` names, with the hash of the body first sent
with it (``idempotency_key`` is the stored form, see ``JobStore.stored_key``)."""

INSERT_IDEMPOTENCY_KEY: Final = (
    "INSERT INTO job_idempotency_keys (key, job_id, body_hash, tenant)"
    " VALUES (%(idempotency_key)s, %(job_id)s, %(body_hash)s, %(tenant)s)"
)

SELECT_JOB_IN_FLIGHT: Final = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE cache_key = %(cache_key)s AND {IN_FLIGHT}"
)

# Two statements rather than one with "(%(status)s IS NULL OR status = ...)": a prepared
# generic plan of that one could not use the (status, created_at) index.
# The same holds for the tenant: one statement per combination, each with its index.
_NEWEST = " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
LIST_JOBS: Final = f"SELECT {JOB_COLUMNS} FROM jobs{_NEWEST}"
LIST_JOBS_WITH_STATUS: Final = f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = %(status)s{_NEWEST}"
LIST_TENANT_JOBS: Final = f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = %(tenant)s{_NEWEST}"
LIST_TENANT_JOBS_WITH_STATUS: Final = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = %(tenant)s AND status = %(status)s{_NEWEST}"
)

COUNT_ACTIVE_OF_TENANT: Final = (
    "SELECT count(*)::int AS n FROM jobs"
    " WHERE tenant = %(tenant)s AND status IN ('queued', 'running')"
)
"""Jobs of ``tenant`` queued or running (``RAGSERVE_MAX_QUEUED_PER_TENANT``)."""

LOCK_TENANT_SUBMISSIONS: Final = "SELECT pg_advisory_xact_lock(%(lock)s, hashtext(%(tenant)s))"
"""Serialises one tenant's submissions while a queue limit is checked (the count and the
insert then commit before the next submission counts)."""

COUNT_BY_STATUS: Final = "SELECT status, count(*)::int AS n FROM jobs GROUP BY status"

SELECT_EVENTS_AFTER: Final = (
    "SELECT seq, type, data FROM job_events WHERE job_id = %(job_id)s AND seq > %(after)s"
    " ORDER BY seq LIMIT %(limit)s"
)

SELECT_CACHED_RESULT: Final = (
    "SELECT a.result FROM answer_cache a JOIN collections c ON c.name = a.collection"
    " WHERE a.cache_key = %(cache_key)s AND a.generation = c.generation"
    " AND a.expires_at > now()"
)
"""A cached answer still valid: not expired, and its collection unchanged since."""

# -- the worker's side (fenced: only the attempt that holds the job writes) ----------------

_HELD_BY_ATTEMPT = "id = %(id)s AND attempts = %(attempt)s AND status = 'running'"

START_ATTEMPT: Final = (
    "WITH before AS (SELECT id, status, updated_at FROM jobs"
    " WHERE id = %(id)s AND status IN ('queued', 'running') FOR UPDATE),"
    " job AS (UPDATE jobs j SET status = 'running', attempts = j.attempts + 1,"
    " event_seq = j.event_seq + 1, started_at = coalesce(j.started_at, now()),"
    " updated_at = now() FROM before WHERE j.id = before.id"
    " RETURNING j.id, j.tenant, j.attempts, j.max_attempts, j.kind, j.collection, j.request,"
    " j.cache_key, j.app, j.event_seq, before.status AS previous,"
    " before.updated_at AS queued_at),"
    " attempt AS (INSERT INTO job_attempts (job_id, attempt, version, worker_id)"
    " SELECT id, attempts, %(version)s, %(worker_id)s FROM job"
    " WHERE %(version)s::text IS NOT NULL"
    " ON CONFLICT (job_id, attempt) DO UPDATE SET version = excluded.version,"
    " worker_id = excluded.worker_id, started_at = now(), finished_at = NULL,"
    " outcome = NULL),"
    " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
    " SELECT id, event_seq, attempts, 'status',"
    " jsonb_strip_nulls(jsonb_build_object('status', 'running', 'attempt', attempts,"
    " 'version', %(version)s::text, 'took_over', nullif(previous = 'running', false)))"
    " FROM job)"
    " SELECT id::text, tenant, attempts, max_attempts, kind, collection, request, cache_key, app,"
    " CASE WHEN previous = 'queued' THEN greatest(0, extract(epoch FROM now()"
    " - greatest(queued_at, %(eligible_at)s::timestamptz)))::float8 END AS waited_s,"
    " c.collection_embedder, c.collection_dim, c.collection_generation"
    " FROM job LEFT JOIN LATERAL (SELECT embedder AS collection_embedder,"
    " embedding_dim AS collection_dim, generation AS collection_generation FROM collections"
    f" WHERE name = {collection_key_sql('job.tenant', 'job.collection')}) c ON true"
)
"""The next attempt of a queued job, or of a running one whose worker died, with its event
and, when the worker names its ``version``, its ``job_attempts`` row.

``waited_s`` is how long the job waited in the queue: from its (re)queueing or, for a retry
with a backoff, from when the queue entry became due (``eligible_at``) until now; null for a
takeover (the job was running on a worker that died), which is not queue wait. ``took_over``
in the event says a job was taken from a dead worker. ``collection_*``: the job's collection
as it is now (nulls if it does not exist), which saves an answer job a statement to read it."""


_REQUEUE_OUTCOME = "CASE WHEN %(refund)s = 1 THEN 'handed_back' ELSE 'retried' END"
_SUCCEEDED = "'succeeded'"
_FAILED = "'failed'"


def _attempt_ends(outcome: str) -> str:
    """Close the attempt's ``job_attempts`` row, in the statement that ends the attempt (whose
    updated job is the CTE ``job``); ``outcome`` is an SQL expression."""
    return (
        f"attempt AS (UPDATE job_attempts SET finished_at = now(), outcome = {outcome}"
        " WHERE job_id = %(id)s AND attempt = %(attempt)s AND EXISTS (SELECT 1 FROM job))"
    )


SUCCEED: Final = (
    "WITH job AS (UPDATE jobs SET status = 'succeeded', result = %(result)s,"
    " error = NULL, finished_at = now(), updated_at = now(),"
    f" event_seq = event_seq + jsonb_array_length(%(events)s) + 1 WHERE {_HELD_BY_ATTEMPT}"
    " RETURNING id, event_seq, attempts),"
    " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
    " SELECT id, event_seq - jsonb_array_length(%(events)s) - 1 + e.ord::int, attempts,"
    " e.value ->> 'type', e.value -> 'data'"
    " FROM job, jsonb_array_elements(%(events)s) WITH ORDINALITY AS e(value, ord)"
    " UNION ALL SELECT id, event_seq, attempts, 'done', %(done)s FROM job),"
    " cached AS (INSERT INTO answer_cache (cache_key, collection, generation,"
    " job_id, result, expires_at, tenant) SELECT %(cache_key)s, %(collection)s,"
    " %(generation)s, id, %(result)s,"
    " now() + make_interval(secs => %(ttl_s)s), %(tenant)s FROM job"
    " WHERE %(cache_key)s::text IS NOT NULL"
    " ON CONFLICT (cache_key) DO UPDATE SET collection = excluded.collection,"
    " generation = excluded.generation, job_id = excluded.job_id,"
    " result = excluded.result, created_at = now(),"
    " expires_at = excluded.expires_at),"
    " files AS (DELETE FROM job_files WHERE job_id IN (SELECT id FROM job)),"
    f" {COUNT_SUCCEEDED_JOB},"
    f" {_attempt_ends(_SUCCEEDED)}"
    " SELECT count(*) AS n FROM job"
)
"""The result, the ``done`` event (after ``events``, a JSON array of ``{"type", "data"}`` still to
store: the attempt's last tokens), the cache entry (when ``cache_key`` is not null), the
removal of the uploaded files and the tenant's usage (when ``usage_tenant`` is not null), in one
statement."""

_ENDING_EVENT = (
    "event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
    " SELECT id, event_seq, attempts, %(event_type)s, %(event)s FROM job)"
)
"""The event that tells how the attempt ended (``event_type``, ``event``), numbered by the
statement's updated job (the CTE ``job``, which bumps ``event_seq``)."""

FAIL: Final = (
    "WITH job AS (UPDATE jobs SET status = 'failed', result = %(result)s, error = %(error)s,"
    " finished_at = now(), updated_at = now(), event_seq = event_seq + 1"
    f" WHERE {_HELD_BY_ATTEMPT} RETURNING id, event_seq, attempts),"
    f" {_ENDING_EVENT}, {_attempt_ends(_FAILED)}"
    " SELECT count(*) AS n FROM job"
)
"""Dead-letter the job, with its ``error`` event, in one statement."""

REQUEUE: Final = (
    "WITH job AS (UPDATE jobs SET status = 'queued', error = %(error)s, updated_at = now(),"
    " max_attempts = max_attempts + %(refund)s, event_seq = event_seq + 1"
    f" WHERE {_HELD_BY_ATTEMPT} RETURNING id, event_seq, attempts),"
    f" {_ENDING_EVENT}, {_attempt_ends(_REQUEUE_OUTCOME)}"
    " SELECT count(*) AS n FROM job"
)
"""Back to ``queued``, with its ``status`` event, in one statement; ``refund`` (0 or 1) gives
the attempt back."""

# -- the client's side ---------------------------------------------------------------------

CANCEL: Final = (
    "UPDATE jobs j SET status = 'cancelled', finished_at = now(), updated_at = now()"
    " FROM (SELECT id, status FROM jobs WHERE id = %(id)s FOR UPDATE) before"
    " WHERE j.id = before.id AND j.status IN ('queued', 'running')"
    " RETURNING before.status AS previous, j.attempts"
)
"""Cancel a queued or running job; returns the status it had before."""

REOPEN: Final = (
    "UPDATE jobs SET status = 'queued', max_attempts = attempts + %(extra_attempts)s,"
    " result = NULL, error = NULL, finished_at = NULL, updated_at = now()"
    " WHERE id = %(id)s AND status IN ('failed', 'cancelled')"
)

# -- events --------------------------------------------------------------------------------


def _append_event(condition: str) -> str:
    return (
        "WITH bumped AS (UPDATE jobs SET event_seq = event_seq + 1"
        f" WHERE {condition} RETURNING id, event_seq, attempts)"
        " INSERT INTO job_events (job_id, seq, attempt, type, data)"
        " SELECT id, event_seq, attempts, %(type)s, %(data)s FROM bumped RETURNING seq"
    )


APPEND_EVENT: Final = _append_event("id = %(id)s")
"""Number and store an event (the number is taken under the job's row lock)."""

APPEND_EVENT_OF_ATTEMPT: Final = _append_event(_HELD_BY_ATTEMPT)
"""The same, only while ``attempt`` still holds the job."""

APPEND_EVENTS_OF_ATTEMPT: Final = (
    "WITH bumped AS (UPDATE jobs SET event_seq = event_seq + jsonb_array_length(%(events)s)"
    f" WHERE {_HELD_BY_ATTEMPT} RETURNING id, event_seq, attempts)"
    " INSERT INTO job_events (job_id, seq, attempt, type, data)"
    " SELECT id, event_seq - jsonb_array_length(%(events)s) + e.ord::int, attempts,"
    " e.value ->> 'type', e.value -> 'data'"
    " FROM bumped, jsonb_array_elements(%(events)s) WITH ORDINALITY AS e(value, ord)"
    " RETURNING seq"
)
"""Several events of ``attempt`` (a JSON array of ``{"type", "data"}``) in one round trip,
numbered in order under the job's row lock; no row when the attempt no longer holds the job."""

# -- a submission in one statement ---------------------------------------------------------


def insert_queued_job_and_entry(queue_table: str, queue_log_table: str) -> str:
    """A queued job, its first event, its ``Idempotency-Key`` (when ``stored_key`` is not
    null) and its pgqueuer entry (with the entry's ``queued`` line in pgqueuer's log), in one
    statement: in autocommit it commits alone, so a submission needs no ``BEGIN``/``COMMIT``.

    No row when nothing was inserted: an identical question is in flight, or (with
    ``check_cache``) a valid cached answer exists; the caller then takes the slow path, which
    tells the two apart. A twin's key makes the statement fail (UniqueViolation) and insert
    nothing.

    The entry is the row pgqueuer's own ``Queries.enqueue`` writes (pgqueuer 1.6,
    ``build_enqueue_query``): priority 0, ``execute_after`` now, no dedupe key, JSON null
    headers, payload the job id; pgqueuer's statement trigger sends its NOTIFY at commit.
    ``tests/jobs/test_submit_statement.py`` compares the two rows column by column.
    ``queue_table``/``queue_log_table``: pgqueuer's (schema-qualified) table names.
    """
    return (
        "WITH cached AS (SELECT 1 FROM answer_cache a JOIN collections c"
        " ON c.name = a.collection WHERE %(check_cache)s AND a.cache_key = %(cache_key)s"
        " AND a.generation = c.generation AND a.expires_at > now()),"
        f" job AS (INSERT INTO jobs ({_NEW_JOB_COLUMNS}, event_seq) SELECT {_NEW_JOB_VALUES}, 1"
        " WHERE NOT EXISTS (SELECT 1 FROM cached)"
        f" ON CONFLICT (cache_key) WHERE {IN_FLIGHT} DO NOTHING"
        f" RETURNING {INSERTED_JOB_COLUMNS}),"
        " event AS (INSERT INTO job_events (job_id, seq, attempt, type, data)"
        " SELECT id, 1, 0, 'status', %(first_event)s FROM job),"
        " remembered AS (INSERT INTO job_idempotency_keys (key, job_id, body_hash, tenant)"
        " SELECT %(stored_key)s, id, request_hash, tenant FROM job"
        " WHERE %(stored_key)s::text IS NOT NULL),"
        f" entry AS (INSERT INTO {queue_table}"
        " (priority, entrypoint, payload, execute_after, dedupe_key, headers, status)"
        " SELECT 0, %(queue)s, convert_to(id::text, 'UTF8'), now(), NULL, 'null'::jsonb,"
        " 'queued' FROM job RETURNING id, entrypoint, priority),"
        f" logged AS (INSERT INTO {queue_log_table} (job_id, status, entrypoint, priority)"
        " SELECT id, 'queued', entrypoint, priority FROM entry)"
        " SELECT * FROM job"
    )


# -- the worker's queue wait ---------------------------------------------------------------


def queue_wait_probe(queue_table: str) -> str:
    """Whether an entry of the entrypoints ``$1`` is queued and due (``eligible``), else how
    long until the soonest deferred one is (``eta``, null when there is none): what pgqueuer
    1.6's ``QueueManager._effective_dequeue_timeout`` asks in up to three statements
    (``eligible_queued_work``, ``next_deferred_eta``, ``queued_work``), in one.

    Both halves read one snapshot with one ``now()``, so an entry is either due or deferred
    and none can slip between them: the gap that pgqueuer's third statement closes (an entry
    crossing its ``execute_after`` between its first two) does not exist here. asyncpg's
    numbered parameter; ``queue_table``: pgqueuer's (schema-qualified) table name.
    """
    return (
        f"SELECT EXISTS (SELECT 1 FROM {queue_table} WHERE entrypoint = ANY($1)"
        " AND status = 'queued' AND execute_after <= now()) AS eligible,"
        f" (SELECT execute_after - now() FROM {queue_table} WHERE entrypoint = ANY($1)"
        " AND status = 'queued' AND execute_after > now() ORDER BY execute_after LIMIT 1) AS eta"
    )
