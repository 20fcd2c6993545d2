"""The routing policy: the decision record's rules, configurable, explaining every decision.

Order (first match wins): PII -> self-hosted ``pii_model`` (an explicit self-hosted choice is honoured; a
commercial one never is); an explicit model; complexity above ``complexity_high``; expected output above
``long_output_tokens``; complexity below ``complexity_low``; the default. Then two adjustments that never
move a PII job to a commercial model: a prompt too long for the chosen model moves to one whose context fits,
and a queue too deep to meet its SLO overflows to the first eligible fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from schemas.jobs import InferenceJob
from schemas.routing import RouteDecision, RouteRule
from switchyard.catalog import Catalog
from switchyard.tokens import estimate_messages_tokens

#: Estimated seconds of queue wait for a model, given its current backlog; None = unknown.
QueueWait = Callable[[str], float | None]


class Signals(NamedTuple):
    """What the classifier read from a job (a NamedTuple: built per job on the bulk submit path)."""

    contains_pii: bool
    pii_types: tuple[str, ...]
    complexity: float
    expected_output_tokens: int
    prompt_tokens: int


def read_signals(job: InferenceJob) -> Signals:
    # Imported here: a bulk submission classifies in its pool processes, and its parent need not load the
    # detectors (15 MB).
    from producer.classify import classify

    report, score, expected = classify(job.text, job.max_tokens)
    return Signals(
        contains_pii=report.contains_pii,
        pii_types=tuple(report.types),
        complexity=score,
        expected_output_tokens=expected,
        prompt_tokens=estimate_messages_tokens(job.messages_as_dicts()),
    )


class Router:
    def __init__(self, catalog: Catalog, queue_wait: QueueWait | None = None) -> None:
        self.catalog = catalog
        self.queue_wait = queue_wait

    def route(self, job: InferenceJob) -> RouteDecision:
        return self.decide(job, read_signals(job))

    def decide(self, job: InferenceJob, s: Signals) -> RouteDecision:
        r = self.catalog.routing
        asked = job.model
        rule: RouteRule
        if s.contains_pii:
            kinds = ", ".join(s.pii_types) or "PII"
            if asked != "auto" and self.catalog.model(asked).self_hosted:
                model, rule = asked, "explicit"
                reason = f"contains {kinds}: requested {asked} is self-hosted, honoured"
            else:
                model, rule = r.pii_model, "pii"
                refused = f"; requested {asked} refused (commercial)" if asked != "auto" else ""
                reason = f"contains {kinds}: kept in-house on {model}{refused}"
        elif asked != "auto":
            model, rule, reason = asked, "explicit", f"job asked for {asked}"
        elif s.complexity > r.complexity_high:
            model, rule = r.high_model, "complexity_high"
            reason = f"complexity {s.complexity:.2f} > {r.complexity_high}: {model}"
        elif s.expected_output_tokens > r.long_output_tokens:
            model, rule = r.long_model, "long_output"
            reason = f"expected output ~{s.expected_output_tokens} tokens > {r.long_output_tokens}: {model}"
        elif s.complexity < r.complexity_low:
            model, rule = r.low_model, "complexity_low"
            reason = f"complexity {s.complexity:.2f} < {r.complexity_low}: {model}"
        else:
            model, rule = r.default_model, "default"
            reason = (
                f"default: {model} (complexity {s.complexity:.2f}, expected output ~{s.expected_output_tokens} tokens)"
            )

        model, rule, reason = self._fit_context(job, s, model, rule, reason)
        model, rule, reason = self._overflow(s, model, rule, reason)
        assert not (s.contains_pii and not self.catalog.model(model).self_hosted), "PII routed off-site"
        return RouteDecision(
            custom_id=job.custom_id,
            model=model,
            queue=self.catalog.model(model).queue,
            reason=reason,
            rule=rule,
            contains_pii=s.contains_pii,
            pii_types=list(s.pii_types),
            complexity=s.complexity,
            expected_output_tokens=s.expected_output_tokens,
            requested_model=asked,
            prompt_tokens=s.prompt_tokens,
        )

    def eligible(self, model: str, contains_pii: bool) -> bool:
        return self.catalog.model(model).self_hosted or not contains_pii

    def _fit_context(
        self, job: InferenceJob, s: Signals, model: str, rule: RouteRule, reason: str
    ) -> tuple[str, RouteRule, str]:
        """A prompt longer than the model's context goes to a model it fits; PII stays in-house (chunked)."""
        spec = self.catalog.model(model)
        need = s.prompt_tokens + min(s.expected_output_tokens, spec.max_output_tokens)
        if need <= spec.context_window or rule == "explicit" or not job.split and s.contains_pii:
            return model, rule, reason
        candidates = [m for m in (self.catalog.routing.long_model, *spec.fallback) if self.eligible(m, s.contains_pii)]
        for other in candidates:
            if need <= self.catalog.model(other).context_window:
                return (
                    other,
                    "long_input",
                    (f"prompt ~{s.prompt_tokens} tokens exceeds {model}'s context ({spec.context_window}): {other}"),
                )
        return model, rule, reason + f"; prompt exceeds its context ({spec.context_window}): will be split"

    def _overflow(self, s: Signals, model: str, rule: RouteRule, reason: str) -> tuple[str, RouteRule, str]:
        r = self.catalog.routing
        if not r.overflow or self.queue_wait is None or rule == "explicit":
            return model, rule, reason
        wait = self.queue_wait(model)
        if wait is None or wait <= r.overflow_max_wait_s:
            return model, rule, reason
        for other in self.catalog.model(model).fallback:
            if not self.eligible(other, s.contains_pii):
                continue
            other_wait = self.queue_wait(other)
            if other_wait is not None and other_wait <= r.overflow_max_wait_s:
                return (
                    other,
                    "overflow",
                    (f"{reason}; {model} queue wait ~{wait:.0f}s > {r.overflow_max_wait_s:.0f}s: overflow to {other}"),
                )
        return model, rule, reason
