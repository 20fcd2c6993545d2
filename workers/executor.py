"""Running one delivered job: the worker's logic, apart from Celery's transport.

``Executor.execute`` claims the job, applies the policies (PII guard, circuit, budget, global rate limit) for
commercial models, runs the backend, records the outcome, and tells the Celery task what to do with the
message: ack it (done or skipped), retry it later, or requeue it now (the engine died under it).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy.exc import DBAPIError

from switchyard import costing
from switchyard.budget import Budgets
from switchyard.catalog import Catalog
from switchyard.db import is_transient
from switchyard.errors import (
    BudgetExceeded,
    CircuitOpenError,
    ContextLengthExceeded,
    EngineDeadError,
    FatalError,
    JobAttemptsExhausted,
    PIIPolicyViolation,
    ProviderError,
    ProviderRateLimited,
    RetryableError,
    SwitchyardError,
)
from switchyard.tokens import estimate_messages_tokens
from workers.engines.base import GenerationRequest, GenerationResult
from workers.recorder import Claim, Outcome, Recorder
from workers.unwritten import UnwrittenResults

log = logging.getLogger(__name__)

#: Republish a job on another model's queue: (job_id, model, priority).
Republish = Callable[[uuid.UUID, str, int], None]


class Runner(Protocol):
    def generate(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult: ...


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["done", "skip", "retry", "requeue"]
    countdown: float = 0.0
    detail: str = ""


class Executor:
    def __init__(self, *, catalog: Catalog, model: str, backend_kind: str, runner: Runner, recorder: Recorder,
                 republish: Republish, budgets: Budgets | None = None, limiter: Any = None,
                 circuit: Any = None, pii_scan: Callable[[str], Any] | None = None,
                 on_attempt: Callable[[Claim], None] | None = None, mapreduce: Any = None) -> None:
        self.catalog = catalog
        self.model = model
        self.spec = catalog.model(model)
        self.backend_kind = backend_kind
        self.runner = runner
        self.recorder = recorder
        self.republish = republish
        self.budgets = budgets
        self.limiter = limiter
        self.circuit = circuit
        self.pii_scan = pii_scan
        self.on_attempt = on_attempt
        self.mapreduce = mapreduce  # workers.mapreduce.MapReduce: parts of split documents
        # A running job is presumed lost after its longest possible run: the call's timeout (twice for an API
        # call that may wait for the rate limiter first), plus a margin.
        self.lease_s = self.spec.timeout_s * (3 if not self.spec.self_hosted else 1) + 30
        self.unwritten = UnwrittenResults()

    # ------------------------------------------------------------------------------------------------
    def execute(self, job_id: uuid.UUID, retries: int = 0, redelivered: bool = False) -> Action:
        """Run one delivery. ``redelivered``: the broker gave this message back (its worker died or shut
        down), or the task is retrying after a database error, so a job still marked running is taken over at
        once instead of after its lease."""
        claim = self.recorder.claim(job_id, lease_s=0 if redelivered else self.lease_s)
        if claim is None:
            if self.mapreduce is not None:
                self.mapreduce.part_delivered_again(job_id)
            return Action("skip", detail="final or owned")  # a redelivery of a finished or running job
        if claim.model != self.model:
            # Rerouted since this message was published; the job's current queue has its own message.
            self.recorder.requeue(job_id)
            return Action("skip", detail=f"job now belongs to {claim.model}")
        if claim.attempts > self.spec.max_attempts:
            self._fail(claim, JobAttemptsExhausted(
                f"delivered {claim.attempts} times (limit {self.spec.max_attempts}); it keeps failing or "
                "killing workers"), dead=True)
            return Action("done", detail="attempts exhausted")
        if self.on_attempt is not None:
            self.on_attempt(claim)
        try:
            return self._run(claim)
        except EngineDeadError as exc:
            log.error("engine dead while running job %s: %s", job_id, exc)
            self.recorder.requeue(job_id)
            return Action("requeue", detail=str(exc))
        except FatalError as exc:
            self._release(claim)
            self._fail(claim, exc, dead=isinstance(exc, PIIPolicyViolation))
            return Action("done", detail=exc.code)
        except RetryableError as exc:
            return self._retry_or_fail(claim, exc)

    # ------------------------------------------------------------------------------------------------
    def _run(self, claim: Claim) -> Action:
        kept = self.unwritten.take(claim.job_id)
        if kept is not None:
            # Generated by an earlier attempt here, which the database failed to record: write it now. Its
            # policies (PII guard, budget hold, rate limit) were applied and settled when it was generated.
            log.info("job %s: writing the result an earlier attempt generated", claim.job_id)
            return self._record(claim, *kept)
        req = claim.request
        messages = req["messages"]
        max_tokens = int(req.get("max_tokens") or self.spec.max_output_tokens)
        prompt_tokens = claim.prompt_tokens_estimate or estimate_messages_tokens(messages)
        if prompt_tokens + min(max_tokens, self.spec.max_output_tokens) > self.spec.context_window:
            raise ContextLengthExceeded(
                f"prompt ~{prompt_tokens} tokens + {max_tokens} output exceeds {self.model}'s context "
                f"({self.spec.context_window} tokens)")
        reservation = f"{claim.job_id}:{claim.attempts}"
        if not self.spec.self_hosted:
            self._guard_pii(claim)
            if self.circuit is not None:
                try:
                    self.circuit.check()
                except CircuitOpenError as exc:
                    moved = self._fallback(claim, f"{self.model} provider circuit open")
                    if moved:
                        return moved
                    raise exc
            if self.budgets is not None:
                try:
                    self.budgets.reserve(claim.job_id, claim.tenant,
                                         costing.worst_case_cost(self.catalog, self.model, prompt_tokens,
                                                                 max_tokens))
                except BudgetExceeded as exc:
                    if self.catalog.budgets.on_exceed == "reroute":
                        target = self.catalog.routing.default_model
                        self._reroute(claim, target, "budget", f"{exc}: rerouted to self-hosted {target}")
                        return Action("done", detail="rerouted: budget")
                    raise
            if self.limiter is not None:
                self.limiter.acquire(reservation, prompt_tokens + max_tokens, timeout=self.spec.timeout_s * 2)
        request = GenerationRequest(
            request_id=reservation, messages=messages, max_tokens=max_tokens,
            temperature=req.get("temperature"), top_p=req.get("top_p"), stop=req.get("stop"),
            model=self.spec.provider_model,
        )
        started = time.monotonic()
        try:
            result = self.runner.generate(request, timeout=self.spec.timeout_s)
        except SwitchyardError as exc:
            if self.limiter is not None:
                if isinstance(exc, ProviderRateLimited):
                    # Providers count refused requests too (OpenAI: "unsuccessful requests contribute to your
                    # per-minute limit"): keep the request, drop its tokens, slow every process down.
                    self.limiter.settle(reservation, 0)
                    self.limiter.penalize(exc.retry_after or 1.0)
                elif isinstance(exc, ProviderError):
                    # Answered with an error (5xx, 4xx, timeout): it may have counted in full.
                    self.limiter.settle(reservation, prompt_tokens + max_tokens)
                else:
                    self.limiter.release(reservation)  # never reached the provider
            if self.circuit is not None:
                self.circuit.record(exc)  # only 5xx, timeouts and connection errors count
            raise
        if self.limiter is not None:
            self.limiter.settle(reservation, result.prompt_tokens + result.completion_tokens)
        if self.circuit is not None:
            self.circuit.record(None)
        return self._record(claim, result, time.monotonic() - started)

    def _record(self, claim: Claim, result: GenerationResult, elapsed_s: float) -> Action:
        try:
            self.recorder.succeed(claim, self._outcome(claim, result, elapsed_s))
        except DBAPIError as exc:
            if is_transient(exc):
                self.unwritten.keep(claim.job_id, result, elapsed_s)  # for the task's retry (workers/tasks.py)
            raise
        if claim.parent_id is not None and self.mapreduce is not None:
            self.mapreduce.part_succeeded(claim)
        return Action("done")

    def _guard_pii(self, claim: Claim) -> None:
        """Defence in depth: whatever routed this job here, personal data never leaves."""
        if claim.contains_pii:
            raise PIIPolicyViolation(f"job is flagged as containing PII; refused by the {self.model} worker")
        if self.pii_scan is not None:
            from switchyard.tokens import message_text

            text = "\n".join(message_text(m.get("content")) for m in claim.request["messages"])
            report = self.pii_scan(text)
            if report.contains_pii:
                raise PIIPolicyViolation(
                    f"PII found before sending ({', '.join(report.types)}); refused by the {self.model} worker")

    def _fallback(self, claim: Claim, why: str) -> Action | None:
        if self.spec.on_circuit_open != "fallback":
            return None
        for other in self.spec.fallback:
            target = self.catalog.model(other)
            if claim.contains_pii and not target.self_hosted:
                continue
            self._reroute(claim, other, "fallback", f"{claim.route_reason}; {why}: fell back to {other}")
            return Action("done", detail=f"fallback to {other}")
        return None

    def _reroute(self, claim: Claim, model: str, rule: str, reason: str) -> None:
        self._release(claim)
        self.recorder.requeue(claim.job_id, model=model, rule=rule, reason=reason)
        self.republish(claim.job_id, model, 0)
        log.info("job %s rerouted from %s to %s (%s)", claim.job_id, self.model, model, rule)

    def _retry_or_fail(self, claim: Claim, exc: RetryableError) -> Action:
        if claim.attempts >= self.spec.max_attempts:
            self._release(claim)
            self._fail(claim, exc, dead=False, note=f" (after {claim.attempts} attempts)")
            return Action("done", detail="retries exhausted")
        self.recorder.requeue(claim.job_id)
        backoff = min(60.0, 0.5 * 2 ** (claim.attempts - 1))
        countdown = max(exc.retry_after or 0.0, backoff)
        countdown *= 1.0 + 0.2 * (uuid.uuid4().int % 100) / 100  # jitter: spread retries of a burst
        log.warning("job %s attempt %s: %s; retrying in %.1fs", claim.job_id, claim.attempts, exc.code,
                    countdown)
        return Action("retry", countdown=countdown, detail=exc.code)

    def _release(self, claim: Claim) -> None:
        if self.budgets is not None and not self.spec.self_hosted:
            self.budgets.release(claim.job_id)

    def _fail(self, claim: Claim, exc: SwitchyardError, *, dead: bool, note: str = "") -> None:
        log.warning("job %s failed on %s: %s", claim.job_id, self.model, exc.code)
        self.recorder.fail(claim, exc.code, f"{exc}{note}", backend=self.backend_kind, dead=dead,
                           payload={"job_id": str(claim.job_id), "model": self.model,
                                    "attempts": claim.attempts})
        if claim.parent_id is not None and self.mapreduce is not None:
            self.mapreduce.part_failed(claim, exc.code, f"{exc}{note}")

    def _outcome(self, claim: Claim, r: GenerationResult, elapsed_s: float) -> Outcome:
        cost = costing.job_cost(self.catalog, self.model, r.prompt_tokens, r.completion_tokens)
        enq = claim.enqueued_at or claim.claimed_at
        queue_wait_ms = max(0, int((claim.claimed_at - enq).total_seconds() * 1000))
        body = {
            "id": r.response_id or f"chatcmpl-{claim.job_id.hex}",
            "object": "chat.completion", "created": int(time.time()), "model": r.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                         "finish_reason": r.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                      "total_tokens": r.prompt_tokens + r.completion_tokens},
        }
        return Outcome(
            body=body, request_id=r.request_id or r.response_id or str(claim.job_id),
            backend=self.backend_kind, simulated=r.simulated, input_tokens=r.prompt_tokens,
            output_tokens=r.completion_tokens, queue_wait_ms=queue_wait_ms,
            inference_ms=int(r.inference_s * 1000), latency_ms=queue_wait_ms + int(elapsed_s * 1000),
            cost_usd=cost.cost_usd, baseline_usd=cost.baseline_usd,
            input_usd_per_mtok=cost.input_usd_per_mtok, output_usd_per_mtok=cost.output_usd_per_mtok,
            gpu_seconds=cost.gpu_seconds, provider=self.spec.provider, self_hosted=self.spec.self_hosted,
        )


