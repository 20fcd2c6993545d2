"""Measuring the simulated engine's loop: the workloads behind the calibration figures of
:mod:`workers.engines.simulated` (``python -m workers.engines.simulated`` runs them)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers.engines.base import GenerationRequest, GenerationResult
from workers.engines.simulated_profiles import OUTPUT_TOKENS_KEY

if TYPE_CHECKING:  # only an annotation: simulated.py imports this module
    from workers.engines.simulated import SimulatedEngine


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A closed-loop workload: ``concurrency`` clients send ``n_requests`` jobs back to back."""

    n_requests: int
    concurrency: int
    prompt_chars: int  # ~prompt_chars / 3.6 prompt tokens
    max_tokens: int
    output_tokens: int | None = None  # None: the profile's hashed lengths


TYPICAL_LOAD = LoadSpec(n_requests=2000, concurrency=16, prompt_chars=360, max_tokens=512)
SATURATION_LOAD = LoadSpec(n_requests=1024, concurrency=1024, prompt_chars=360, max_tokens=1024,
                           output_tokens=1024)


@dataclass(frozen=True, slots=True)
class LoadReport:
    requests: int
    completion_tokens: int
    modelled_s: float  # makespan on the modelled clock
    wall_s: float
    tokens_per_s: float  # completion tokens per modelled second
    p50_s: float  # end-to-end (inference_s) percentiles, modelled
    p95_s: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run_load(engine: SimulatedEngine, spec: LoadSpec) -> LoadReport:
    """Drive ``engine`` with ``spec`` on the running loop and measure it."""
    extra = {OUTPUT_TOKENS_KEY: spec.output_tokens} if spec.output_tokens else {}
    filler = "Summarise the following record and extract its fields. " * (spec.prompt_chars // 56 + 1)
    jobs = iter(range(spec.n_requests))
    results: list[GenerationResult] = []

    async def client() -> None:
        for i in jobs:  # shared iterator: a finished job is replaced at once (closed loop)
            content = f"Job {i}. {filler}"[: spec.prompt_chars]
            messages = [{"role": "user", "content": content}]
            request = GenerationRequest(f"load-{i}", messages, max_tokens=spec.max_tokens, extra=extra)
            results.append(await engine.generate(request))

    await engine.start()
    v0, w0 = engine.modelled_now(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(spec.concurrency)))
    modelled = engine.modelled_now() - v0
    tokens = sum(r.completion_tokens for r in results)
    latencies = [r.inference_s for r in results]
    rate = tokens / modelled if modelled else 0.0
    return LoadReport(len(results), tokens, modelled, time.perf_counter() - w0, rate,
                      percentile(latencies, 50), percentile(latencies, 95))

