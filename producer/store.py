"""Producer-side writes: batches and jobs, idempotent per (batch, custom_id)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert

from schemas.jobs import InferenceJob
from schemas.routing import RouteDecision
from schemas.tables import Batch, Job

if TYPE_CHECKING:
    from producer.chunking import SplitPlan
from switchyard.catalog import Catalog


def ensure_batch(engine: Engine, name: str, source: str | None = None) -> uuid.UUID:
    with engine.begin() as conn:
        conn.execute(
            insert(Batch)
            .values(id=uuid.uuid4(), name=name, source=source)
            .on_conflict_do_nothing(index_elements=[Batch.name])
        )
        return conn.execute(select(Batch.id).where(Batch.name == name)).scalar_one()


def find_batch(engine: Engine, name_or_id: str) -> uuid.UUID | None:
    """The id of the batch with this name (or id)."""
    with engine.connect() as conn:
        found = conn.execute(select(Batch.id).where(Batch.name == name_or_id)).scalar_one_or_none()
        if found is None:
            try:
                as_uuid = uuid.UUID(name_or_id)
            except ValueError:
                return None
            found = conn.execute(select(Batch.id).where(Batch.id == as_uuid)).scalar_one_or_none()
        return found


def resolved_max_tokens(job: InferenceJob, decision: RouteDecision, catalog: Catalog) -> int:
    """The completion limit sent to the model: the job's own, or a margin over the router's estimate."""
    cap = catalog.model(decision.model).max_output_tokens
    if job.max_tokens is not None:
        return min(job.max_tokens, cap) if catalog.model(decision.model).self_hosted else job.max_tokens
    return min(cap, max(256, decision.expected_output_tokens * 2))


def new_job_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one ``os.urandom`` call.

    ``str(uuid.uuid4())`` per job costs 1.8 us, and each ``os.urandom`` call releases the GIL: on the bulk
    submit path, where writer and pipe threads wait for it, the routing thread then waits up to a switch
    interval to get it back, 10^5 times a file. Here: 0.5 us a job and one release a chunk.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def job_row(
    batch_id: uuid.UUID | str, seq: int, job: InferenceJob, d: RouteDecision, catalog: Catalog, job_id: str
) -> dict[str, Any]:
    """A jobs row (``job_id``: from new_job_ids; ``batch_id`` may be given as text, formatted once a chunk)."""
    request: dict[str, Any] = {
        "messages": job.messages_as_dicts(),
        "max_tokens": resolved_max_tokens(job, d, catalog),
        "split": job.split,
    }
    for key in ("temperature", "top_p", "stop"):
        value = getattr(job, key)
        if value is not None:
            request[key] = value
    return {
        "id": job_id,
        "batch_id": batch_id,
        "custom_id": job.custom_id,
        "seq": seq,
        "state": "queued",
        "model": d.model,
        "requested_model": d.requested_model,
        "route_rule": d.rule,
        "route_reason": d.reason,
        "contains_pii": d.contains_pii,
        "pii_types": list(d.pii_types),
        "complexity": d.complexity,
        "expected_output_tokens": d.expected_output_tokens,
        "prompt_tokens_estimate": d.prompt_tokens,
        "priority": job.priority,
        "tenant": job.tenant,
        "request": request,
        "job_metadata": job.metadata,
        "attempts": 0,
        "parent_id": None,
        "chunk_index": None,
        "chunk_count": None,
    }


def part_rows(parent: dict[str, Any], plan: SplitPlan) -> list[dict[str, Any]]:
    """The map parts of a split document, as job rows under ``parent``."""
    from producer.chunking import map_messages
    from switchyard.tokens import estimate_messages_tokens

    rows = []
    for index in range(len(plan.parts)):
        messages = map_messages(plan, index)
        row = dict(parent)
        row.update(
            id=str(uuid.uuid4()),
            custom_id=f"{parent['custom_id']}#part{index + 1}",
            state="queued",
            parent_id=parent["id"],
            chunk_index=index,
            chunk_count=None,
            job_metadata=None,
            request={"messages": messages, "max_tokens": plan.map_max_tokens},
            prompt_tokens_estimate=estimate_messages_tokens(messages),
            route_reason=f"{parent['route_reason']}; part {index + 1} of {len(plan.parts)}",
        )
        rows.append(row)
    return rows


#: Columns a producer writes; the rest take their defaults. Order matters for COPY.
_COPY_COLUMNS = (
    "id",
    "batch_id",
    "custom_id",
    "seq",
    "state",
    "model",
    "requested_model",
    "route_rule",
    "route_reason",
    "contains_pii",
    "pii_types",
    "complexity",
    "expected_output_tokens",
    "prompt_tokens_estimate",
    "priority",
    "tenant",
    "request",
    "metadata",
    "attempts",
    "parent_id",
    "chunk_index",
    "chunk_count",
)
# COPY's text format: these four characters are escaped in every value; None is \N.
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _copy_text(value: str) -> str:
    # Four str.replace passes run in C; most values have none of these characters, and the test is cheap.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        for char, escaped in _COPY_ESCAPES:
            value = value.replace(char, escaped)
    return value


def _or_null(value: Any) -> str:
    return "\\N" if value is None else str(value)


def _json(value: Any) -> str:
    # orjson: a tenth of json.dumps's time on a 1 KB prompt. It refuses what JSON input can still hold (an
    # integer beyond 64 bits in metadata): the standard library takes those.
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _json_or_null(value: Any) -> str:
    return "\\N" if value is None else _copy_text(_json(value))


def _copy_line(row: dict[str, Any]) -> str:
    """One row in COPY's text format, in _COPY_COLUMNS order. Formatted here rather than by psycopg's
    write_row: on the bulk submit path (10^5-10^6 rows) its per-value adaptation cost more than everything else
    the row needs. Free text is escaped; ids, numbers and rule names cannot hold a tab or a newline."""
    return (
        f"{row['id']}\t{row['batch_id']}\t{_copy_text(row['custom_id'])}\t{row['seq']}\t{row['state']}\t"
        f"{row['model']}\t{row['requested_model']}\t{row['route_rule']}\t{_copy_text(row['route_reason'])}\t"
        f"{'t' if row['contains_pii'] else 'f'}\t{_json(row['pii_types'])}\t{row['complexity']!r}\t"
        f"{row['expected_output_tokens']}\t{row['prompt_tokens_estimate']}\t{row['priority']}\t"
        f"{_copy_text(row['tenant']) if row['tenant'] is not None else chr(92) + 'N'}\t"
        f"{_copy_text(_json(row['request']))}\t{_json_or_null(row['job_metadata'])}\t{row['attempts']}\t"
        f"{_or_null(row['parent_id'])}\t{_or_null(row['chunk_index'])}\t{_or_null(row['chunk_count'])}\n"
    )


def copy_block(rows: Sequence[dict[str, Any]]) -> str:
    """The rows in COPY's text format, for insert_jobs (formatted ahead by the submitter's routing thread)."""
    return "".join(map(_copy_line, rows))


def insert_jobs(
    conn: Connection, rows: Sequence[dict[str, Any]], block: str | None = None
) -> list[tuple[str, str, int]]:
    """Insert the rows that are new in their batch; return (id as text, model, priority) of those inserted
    (text: the ids go into broker messages, and building 10^5 UUID objects only to print them costs).

    First a COPY straight into jobs, in a savepoint: a chunk of new custom_ids (every first submission) costs
    one COPY. If one of them is already recorded (a resubmission, a resumed submit, a concurrent submit of the
    same batch), the savepoint is rolled back and the chunk goes through a temporary table and one INSERT ...
    SELECT ... ON CONFLICT DO NOTHING, which skips those: idempotent per (batch, custom_id) either way, and an
    order of magnitude faster than multi-row VALUES for thousands of rows. enqueued_at takes its default,
    now(): until its message is in Redis the job is also listed in its batch's ``unpublished``
    (hold_unpublished), which is what a resumed submit reads.
    """
    if not rows:
        return []
    raw = conn.connection.driver_connection
    columns = ", ".join(_COPY_COLUMNS)
    payload = copy_block(rows) if block is None else block
    try:
        with conn.begin_nested(), raw.cursor() as cur, cur.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            copy.write(payload)
    except psycopg.errors.UniqueViolation:
        pass  # some custom_ids are recorded already: skip them below
    else:
        return [(r["id"], r["model"], r["priority"]) for r in rows]
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS jobs_incoming (LIKE jobs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY jobs_incoming ({columns}) FROM STDIN") as copy:
            copy.write(payload)
        cur.execute(
            f"INSERT INTO jobs ({columns}) SELECT {columns} FROM jobs_incoming "
            "ON CONFLICT ON CONSTRAINT uq_jobs_batch_custom_id DO NOTHING RETURNING id::text, model, priority"
        )
        inserted = [(r[0], r[1], r[2]) for r in cur.fetchall()]
        cur.execute("TRUNCATE jobs_incoming")
    return inserted


#: Request keys that are the user's job as written; max_tokens is compared apart (it is resolved per model) and
#: task_head is derived (a split document's).
_JOB_REQUEST_KEYS = ("messages", "split", "temperature", "top_p", "stop")


def differing(conn: Connection, batch_id: uuid.UUID | str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """custom_ids of ``rows`` (skipped: their custom_id is recorded in the batch already) whose job is not the
    recorded one: a resubmission with an edited prompt must not pass for "already in the batch" unnoticed."""
    if not rows:
        return []
    query = select(
        Job.custom_id, Job.model, Job.requested_model, Job.priority, Job.tenant,
        Job.job_metadata.label("job_metadata"), Job.request,  # the column is "metadata", the attribute not
    ).where(Job.batch_id == batch_id, Job.custom_id.in_([row["custom_id"] for row in rows]))
    recorded = {r.custom_id: r for r in conn.execute(query)}
    changed = []
    for row in rows:
        old = recorded.get(row["custom_id"])
        if old is None:
            continue  # not recorded after all (e.g. a concurrent submit's row rolled back): nothing to compare
        new_request, old_request = row["request"], old.request
        same = (
            all(new_request.get(k) == old_request.get(k) for k in _JOB_REQUEST_KEYS)
            and (row["requested_model"], row["priority"], row["tenant"], row["job_metadata"])
            == (old.requested_model, old.priority, old.tenant, old.job_metadata)
            # The resolved limit depends on the model routed to, which queue depths may change between runs.
            and (row["model"] != old.model or new_request["max_tokens"] == old_request.get("max_tokens"))
        )
        if not same:
            changed.append(row["custom_id"])
    return changed


def unpublished(conn: Connection, batch_id: uuid.UUID) -> list[tuple[str, str, int]]:
    """Jobs recorded but never handed to the broker (a submit interrupted between the two steps).

    Listed in the batch's ``unpublished`` array (the parts of a split document too); top-level rows from before
    that column (``enqueued_at`` unset) count too.
    """
    rows = conn.execute(
        text(
            "SELECT j.id::text, j.model, j.priority FROM jobs j WHERE j.batch_id = :batch AND j.state = 'queued' "
            "AND (j.id = ANY(SELECT unnest(unpublished) FROM batches WHERE id = :batch) "
            "OR (j.enqueued_at IS NULL AND j.parent_id IS NULL)) ORDER BY j.seq, j.chunk_index NULLS FIRST"
        ),
        {"batch": batch_id},
    )
    return [(r[0], r[1], r[2]) for r in rows]


def _uuid_array(ids: Sequence[str | uuid.UUID]) -> str:
    """An array literal ('{id,id,...}'), cast to uuid[] in SQL: one join, where psycopg would adapt 2,000 list
    elements one by one in Python."""
    return "{" + ",".join(map(str, ids)) + "}"


def hold_unpublished(conn: Connection, batch_id: uuid.UUID, ids: Sequence[str | uuid.UUID]) -> None:
    """List ``ids`` as recorded but not yet published: call in the transaction that inserts them."""
    if ids:
        conn.execute(
            text("UPDATE batches SET unpublished = unpublished || CAST(:ids AS uuid[]) WHERE id = :batch"),
            {"ids": _uuid_array(ids), "batch": batch_id},
        )


def release_unpublished(conn: Connection, batch_id: uuid.UUID, ids: Sequence[str | uuid.UUID]) -> None:
    """Their messages are in the broker: take ``ids`` off the batch's list (others' entries stay: another
    submit to the same batch may hold its own)."""
    if ids:
        conn.execute(
            text(
                "UPDATE batches SET unpublished = ARRAY(SELECT unnest(unpublished) EXCEPT "
                "SELECT unnest(CAST(:ids AS uuid[]))) WHERE id = :batch"
            ),
            {"ids": _uuid_array(ids), "batch": batch_id},
        )


def mark_enqueued(conn: Connection, ids: Sequence[str | uuid.UUID]) -> None:
    """Stamp enqueued_at on jobs handed to the broker outside a submit's insert (the reaper's re-publishes,
    rows recorded before 0002)."""
    if ids:
        # One array parameter, not thousands of bind parameters.
        conn.execute(
            text("UPDATE jobs SET enqueued_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": list(ids)}
        )


def add_batch_total(conn: Connection, batch_id: uuid.UUID, added: int) -> None:
    if added:
        conn.execute(update(Batch).where(Batch.id == batch_id).values(total_jobs=Batch.total_jobs + added))
