"""The shape of the cost and latency report (``switchyard report --json``): pydantic models and their JSON
schema, committed as schemas/report.schema.json. :mod:`switchyard.report` fills them from the ledger.

Every figure is kept twice, ``real`` and ``simulated``. Money is ``Decimal`` and an exact decimal string in JSON
(the ledger's ten places), so that a consumer's sums match the ledger to the cent; round for display only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

NO_TENANT = "(none)"

Usd = Annotated[
    Decimal,
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                    "description": "USD as an exact decimal string"}),
]


class LatencyStats(BaseModel):
    p50_ms: float | None = Field(description="median, ms (percentile_cont); null without jobs")
    p95_ms: float | None = Field(description="95th percentile, ms")
    p99_ms: float | None = Field(description="99th percentile, ms")


class Latency(BaseModel):
    total: LatencyStats = Field(description="end to end: queue wait + inference (+ writes)")
    queue_wait: LatencyStats = Field(description="enqueued until a worker took the job")
    inference: LatencyStats = Field(description="the model call alone")


class Figures(BaseModel):
    """One set of jobs (all real, or all simulated): volume, money, latency."""

    jobs: int = Field(description="jobs that ran and were billed (ledger entries)")
    input_tokens: int = Field(description="prompt tokens")
    output_tokens: int = Field(description="completion tokens")
    cost_usd: Usd = Field(description="marginal cost: sum of the ledger's cost_usd")
    loaded_cost_usd: Usd = Field(description="fully loaded cost: self-hosted idle capacity included")
    baseline_usd: Usd = Field(description="the same jobs on the baseline commercial model, same tokens")
    savings_usd: Usd = Field(description="baseline_usd - cost_usd")
    savings_pct: float | None = Field(description="savings_usd / baseline_usd, in %")
    loaded_savings_usd: Usd = Field(description="baseline_usd - loaded_cost_usd")
    loaded_savings_pct: float | None = Field(description="loaded_savings_usd / baseline_usd, in %")
    latency: Latency = Field(description="latency percentiles of these jobs")
    slo_met: bool | None = Field(description="total P95 at most the SLO; null without jobs")


class ModelRow(BaseModel):
    model: str = Field(description="model name (queue)")
    display_name: str = Field(description="catalog display name")
    self_hosted: bool = Field(description="runs on our own GPU pool")
    failed_jobs: int = Field(description="jobs that ended failed on this model (no ledger entry)")
    dead_jobs: int = Field(description="jobs dead-lettered on this model")
    real: Figures | None = Field(description="real jobs; null when none")
    simulated: Figures | None = Field(description="SIMULATED jobs; null when none")


class TenantRow(BaseModel):
    tenant: str = Field(description=f"tenant, or {NO_TENANT!r} for jobs without one")
    real: Figures | None = Field(description="real jobs; null when none")
    simulated: Figures | None = Field(description="SIMULATED jobs; null when none")


class RouteRow(BaseModel):
    rule: str = Field(description="the routing rule that decided (schemas.routing.RouteRule)")
    label: str = Field(description="why, in words")
    real_jobs: int = Field(description="real jobs routed by this rule")
    real_share_pct: float = Field(description="share of all real jobs, in %")
    simulated_jobs: int = Field(description="SIMULATED jobs routed by this rule")
    simulated_share_pct: float = Field(description="share of all simulated jobs, in %")
    models: dict[str, int] = Field(description="jobs per model this rule sent them to (real + simulated)")


class PoolRow(BaseModel):
    model: str = Field(description="self-hosted model")
    monthly_usd: Usd = Field(description="the pool's monthly infrastructure cost (catalog)")
    period_cost_usd: Usd = Field(description="monthly_usd prorated over the report period")
    pool_marginal_usd: Usd = Field(description="marginal cost of all its jobs in the period, any batch")
    utilisation: float | None = Field(description="pool_marginal_usd / period_cost_usd (> 1 on bursts)")
    loaded_factor: float = Field(description="loaded cost / marginal cost for a job on this pool (>= 1)")
    attributed_usd: Usd = Field(description="loaded cost carried by this report's jobs")


class Period(BaseModel):
    start: datetime | None = Field(description="--since, else the first ledger entry")
    end: datetime | None = Field(description="the last ledger entry")
    seconds: float = Field(description="length of the period, used to prorate the pools")


class Report(BaseModel):
    generated_at: datetime = Field(description="when the report was built (UTC)")
    batch: str | None = Field(description="--batch as given (name or id)")
    batch_id: uuid.UUID | None = Field(description="the batch the report is limited to")
    since: datetime | None = Field(description="--since: only ledger entries from then on")
    period: Period = Field(description="the period the figures cover")
    baseline_model: str = Field(description="the all-commercial baseline: every job priced on this model")
    slo_p95_ms: int = Field(description="the P95 latency objective (catalog slo.p95_ms)")
    includes_simulated: bool = Field(description="true when any simulated job is included (kept apart)")
    money: str = Field("exact decimal strings, USD", description="how USD amounts are encoded")
    models: list[ModelRow] = Field(description="per model, catalog order")
    tenants: list[TenantRow] = Field(description="per tenant, by name")
    routes: list[RouteRow] = Field(description="share of jobs per routing rule, most used first")
    pools: list[PoolRow] = Field(description="self-hosted pools: prorated cost and utilisation")
    failed_jobs: int = Field(description="jobs that ended failed")
    dead_jobs: int = Field(description="jobs dead-lettered")
    real: Figures = Field(description="totals over real jobs: the real bill")
    simulated: Figures = Field(description="totals over SIMULATED jobs: never part of the real bill")


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``switchyard report --json`` (committed as schemas/report.schema.json)."""
    schema = Report.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "switchyard/report.schema.json",
            **schema}
