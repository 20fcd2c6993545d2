"""Result lines: the OpenAI Batch output format plus Switchyard's own block."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ResultError(BaseModel):
    code: str  # stable machine-readable code (see switchyard.errors)
    message: str  # what went wrong, for a human


class ResultResponse(BaseModel):
    status_code: int  # 200 on success
    request_id: str  # the provider's or engine's request id
    body: dict[str, Any]  # an OpenAI chat.completion object


class SwitchyardInfo(BaseModel):
    """Switchyard's additions to each result line."""

    model_config = ConfigDict(extra="allow")

    model: str | None  # the model that ran the job (after any reroute)
    route_reason: str | None  # why it went there
    cost_usd: float  # what the job cost (marginal view for self-hosted models)
    latency_ms: int | None  # end-to-end: enqueue to result (queue wait + inference)
    simulated: bool  # True when no real model or provider produced the text
    state: str  # succeeded | failed | dead | queued | running
    queue_wait_ms: int | None = None
    inference_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    metadata: dict[str, Any] | None = None  # the job's metadata, untouched
    chunks: int | None = None  # number of parts when a long document was split


class ResultLine(BaseModel):
    """One line of ``switchyard results``."""

    id: str  # Switchyard's job id
    custom_id: str
    response: ResultResponse | None
    error: ResultError | None
    switchyard: SwitchyardInfo
