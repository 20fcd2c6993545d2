"""The router's decision for one job: where it goes and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Which rule decided. Reports group jobs by it ("share of jobs per route and why").
RouteRule = Literal[
    "pii",  # personal data or secrets: self-hosted, whatever was asked
    "explicit",  # the job named its model
    "complexity_high",  # hard reasoning -> strong commercial model
    "long_output",  # long-form output -> long-context model
    "complexity_low",  # simple query -> small model
    "default",  # everything else
    "overflow",  # moved off a queue too deep to meet its SLO
    "budget",  # moved to self-hosted because a commercial budget was exhausted
    "fallback",  # moved because the first choice's provider circuit was open
    "long_input",  # the prompt does not fit the chosen model's context: a long-context model takes it
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecision:
    """Where a job goes and why; the classify command prints these fields.

    A plain dataclass, not a pydantic model: the router builds one per job from values it computed itself
    (nothing to validate), on the bulk submit path.
    """

    custom_id: str | None = None  # the job's key, when classifying a file
    model: str  # the chosen model
    queue: str  # the Celery queue it is published to
    reason: str  # human-readable explanation of the decision
    rule: RouteRule  # the rule that decided
    contains_pii: bool  # personal data or secrets were found
    pii_types: list[str]  # kinds found (never the values)
    complexity: float  # 0 (trivial) .. 1 (hard reasoning)
    expected_output_tokens: int  # the router's estimate of the completion length
    requested_model: str = "auto"  # what the job asked for
    prompt_tokens: int = 0  # estimated prompt tokens

    def contract_row(self) -> dict[str, object]:
        """The classify command's line, in the contract's field order."""
        return {
            "custom_id": self.custom_id, "model": self.model, "queue": self.queue, "reason": self.reason,
            "contains_pii": self.contains_pii, "pii_types": list(self.pii_types),
            "complexity": round(self.complexity, 4), "expected_output_tokens": self.expected_output_tokens,
            "rule": self.rule, "requested_model": self.requested_model, "prompt_tokens": self.prompt_tokens,
        }
