"""What a job costs, in Decimal USD, from the catalog's prices in force when it ran.

Commercial models: the provider's list price per million input and output tokens.

Self-hosted models: the pool's monthly infrastructure cost spread over the tokens it can serve in a month at
its rated throughput (``capacity_tokens_per_s``). That is the *marginal* view: what this job used of a fully
busy pool. Prompt tokens count at ``PREFILL_WEIGHT`` of a generated token, because prefill runs in parallel
across the prompt and costs a GPU far less per token than decoding. The *fully loaded* view (idle capacity
included) is computed in reports: the pool's cost prorated over the report period, divided among its jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from switchyard.catalog import Catalog, ModelSpec

MTOK = Decimal(1_000_000)
SECONDS_PER_MONTH = Decimal(30 * 24 * 3600)
#: Cost of a prompt token relative to a generated one on a self-hosted pool.
PREFILL_WEIGHT = Decimal("0.25")
#: GPUs per host class, for GPU-seconds.
GPUS = {"8xA100": 8, "4xL40S": 4}


@dataclass(frozen=True, slots=True)
class JobCost:
    cost_usd: Decimal  # marginal cost of the job
    baseline_usd: Decimal  # the same tokens on the baseline commercial model
    input_usd_per_mtok: Decimal  # unit prices used (self-hosted: effective price per token-equivalent)
    output_usd_per_mtok: Decimal
    gpu_seconds: float


def self_hosted_usd_per_mtok(spec: ModelSpec) -> Decimal:
    """Effective price of one million generated tokens on a fully busy self-hosted pool."""
    if not spec.capacity_tokens_per_s:
        return Decimal(0)
    monthly_tokens = Decimal(str(spec.capacity_tokens_per_s)) * SECONDS_PER_MONTH
    return spec.monthly_usd / monthly_tokens * MTOK


def api_cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> Decimal:
    return (spec.input_usd_per_mtok * input_tokens + spec.output_usd_per_mtok * output_tokens) / MTOK


def job_cost(catalog: Catalog, model: str, input_tokens: int, output_tokens: int) -> JobCost:
    spec = catalog.model(model)
    baseline = api_cost(catalog.model(catalog.baseline_model), input_tokens, output_tokens)
    if not spec.self_hosted:
        return JobCost(api_cost(spec, input_tokens, output_tokens), baseline,
                       spec.input_usd_per_mtok, spec.output_usd_per_mtok, 0.0)
    per_mtok = self_hosted_usd_per_mtok(spec)
    weighted = PREFILL_WEIGHT * input_tokens + output_tokens
    gpu_s = 0.0
    if spec.capacity_tokens_per_s:
        gpu_s = float(weighted) / spec.capacity_tokens_per_s * GPUS.get(spec.host_class or "", 1)
    return JobCost(per_mtok * weighted / MTOK, baseline, per_mtok * PREFILL_WEIGHT, per_mtok, gpu_s)


def worst_case_cost(catalog: Catalog, model: str, prompt_tokens: int, max_tokens: int) -> Decimal:
    """The most a commercial call can cost: what a budget must hold before the call."""
    return api_cost(catalog.model(model), prompt_tokens, max_tokens)
