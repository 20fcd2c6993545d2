"""The model catalog: the four models of the decision record, their prices, limits and engines, and the
routing thresholds. Built-in defaults, overridable key by key by the TOML file that ``SWITCHYARD_CONFIG`` names.

Validated once at start-up (pydantic, unknown keys refused) so that a typo fails loudly with its key and line
instead of silently keeping a default.
"""

from __future__ import annotations

import copy
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.errors import ConfigError

Provider = Literal["vllm", "openai", "anthropic"]
SELF_HOSTED_PROVIDERS = frozenset({"vllm"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class EngineArgs(_Strict):
    """Arguments of a warm vLLM engine (self-hosted models only)."""

    model_path: str = ""  # local path or hub id of the weights; set per site
    tensor_parallel_size: int = Field(1, ge=1)  # GPUs one engine spans
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1)  # share of each GPU's memory vLLM may take
    max_model_len: int = Field(8192, ge=256)  # context length the engine is built for
    max_num_seqs: int = Field(256, ge=1)  # sequences batched at once (continuous batching cap)
    dtype: str = "auto"  # weights dtype
    served_model_name: str = ""  # model id of a remote `vllm serve` endpoint
    base_urls: list[str] = []  # remote `vllm serve` endpoints, one per host (engine = "vllm-remote")


class ModelSpec(_Strict):
    """One model of the fleet."""

    provider: Provider  # who runs it
    queue: str  # Celery queue its jobs go to (the contract: same as the model name)
    display_name: str  # for reports
    provider_model: str  # the id sent to the provider / engine
    host_class: str | None = None  # hardware of the self-hosted pool, e.g. "8xA100"
    context_window: int = Field(ge=256)  # prompt + output tokens the model accepts
    max_output_tokens: int = Field(ge=1)  # largest completion the model produces
    input_usd_per_mtok: Decimal = Field(Decimal(0), ge=0)  # API price per million input tokens
    output_usd_per_mtok: Decimal = Field(Decimal(0), ge=0)  # API price per million output tokens
    monthly_usd: Decimal = Field(Decimal(0), ge=0)  # self-hosted pool's monthly infrastructure cost
    capacity_tokens_per_s: float = Field(0, ge=0)  # pool's aggregate token throughput (self-hosted cost model)
    p95_target_ms: int = Field(800, ge=1)  # latency the pool is sized for
    rpm: int = Field(0, ge=0)  # requests per minute, global across every worker; 0 = unlimited
    tpm: int = Field(0, ge=0)  # tokens per minute, global; 0 = unlimited
    concurrency: int = Field(64, ge=1, le=4096)  # jobs in flight per worker process
    timeout_s: float = Field(120.0, gt=0)  # one inference call's time limit
    max_attempts: int = Field(5, ge=1, le=50)  # deliveries/retries before the job is dead-lettered
    fallback: list[str] = []  # models to use when this one's circuit is open or its queue overflows
    on_circuit_open: Literal["fallback", "wait"] = "fallback"  # provider down: reroute, or retry later
    circuit_failures: int = Field(5, ge=1)  # provider failures (5xx, timeouts) within the window that open it
    circuit_window_s: float = Field(30.0, gt=0)
    circuit_cooldown_s: float = Field(30.0, gt=0)  # open this long before one probe is let through
    engine: EngineArgs = EngineArgs()

    @property
    def self_hosted(self) -> bool:
        return self.provider in SELF_HOSTED_PROVIDERS


class RoutingSpec(_Strict):
    """The decision record's routing rules; every threshold and target is configurable."""

    complexity_high: float = Field(0.8, ge=0, le=1)  # above: high_model
    complexity_low: float = Field(0.3, ge=0, le=1)  # below: low_model
    long_output_tokens: int = Field(2000, ge=1)  # expected output above: long_model
    pii_model: str = "llama-3-70b"  # jobs with PII: must be self-hosted
    high_model: str = "gpt-4-turbo"
    long_model: str = "claude-3-opus"
    low_model: str = "mistral-7b"
    default_model: str = "llama-3-70b"
    overflow: bool = True  # move jobs off a queue too deep to meet its SLO, to an eligible fallback
    overflow_max_wait_s: float = Field(30.0, gt=0)  # queue wait (depth / drain rate) that triggers overflow


class BudgetSpec(_Strict):
    """Monthly USD limits on commercial spend; reserved before each call, settled after."""

    monthly_usd: Decimal | None = None  # overall limit for all tenants; None = unlimited
    tenants: dict[str, Decimal] = {}  # per-tenant limits
    on_exceed: Literal["reroute", "fail"] = "reroute"  # reroute to a self-hosted model, or fail the job


class SLOSpec(_Strict):
    p95_ms: int = Field(800, ge=1)  # end-to-end P95 latency objective (queue wait + inference)


class NightlySpec(_Strict):
    """Celery beat: submit files dropped into a folder at a set time, once each."""

    enabled: bool = False
    watch: str = ""  # glob, e.g. "/data/inbox/*.jsonl"
    at: str = "02:00"  # HH:MM, local time of the beat process
    poll_s: float = Field(0, ge=0)  # >0: also look every poll_s seconds (tests, near-real-time sites)
    settle_s: float = Field(5.0, ge=0)  # a file modified this recently may still be being written: wait


class Catalog(_Strict):
    models: dict[str, ModelSpec]
    routing: RoutingSpec = RoutingSpec()
    budgets: BudgetSpec = BudgetSpec()
    slo: SLOSpec = SLOSpec()
    nightly: NightlySpec = NightlySpec()
    visibility_timeout_s: int = Field(7200, ge=5)  # Redis redelivery timeout; > the longest job
    orphan_grace_s: float = Field(600.0, gt=0)  # a job queued/running this long with no message is republished
    reaper_interval_s: float = Field(60.0, gt=0)  # how often one worker looks for such jobs
    task_events: bool = False  # per-task events for Flower's task views (~1 ms of worker CPU per job)
    baseline_model: str = "gpt-4-turbo"  # reports price every job on this model: the all-commercial baseline

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        names = set(self.models)
        r = self.routing
        if self.baseline_model not in names:
            raise ValueError(f"baseline_model: unknown model {self.baseline_model!r}")
        for key in ("pii_model", "high_model", "long_model", "low_model", "default_model"):
            if getattr(r, key) not in names:
                raise ValueError(f"routing.{key}: unknown model {getattr(r, key)!r}")
        if not self.models[r.pii_model].self_hosted:
            raise ValueError(f"routing.pii_model: {r.pii_model!r} is commercial; PII must stay self-hosted")
        if r.complexity_low > r.complexity_high:
            raise ValueError("routing.complexity_low must not exceed routing.complexity_high")
        for name, spec in self.models.items():
            for fb in spec.fallback:
                if fb not in names:
                    raise ValueError(f"models.{name}.fallback: unknown model {fb!r}")
        slowest = max(self.models, key=lambda n: self.models[n].timeout_s)
        if self.visibility_timeout_s <= self.models[slowest].timeout_s:
            raise ValueError(f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed every model's "
                             f"timeout_s (models.{slowest}.timeout_s = {self.models[slowest].timeout_s})")
        return self

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(self.models))}") from None

    @property
    def self_hosted(self) -> list[str]:
        return [n for n, m in self.models.items() if m.self_hosted]

    @property
    def commercial(self) -> list[str]:
        return [n for n, m in self.models.items() if not m.self_hosted]


# The decision record ("LLM Selection Strategy"). API prices are the providers' list prices.
DEFAULTS: dict[str, Any] = {
    "models": {
        "llama-3-70b": {
            "provider": "vllm", "queue": "llama-3-70b", "display_name": "Llama 3 70B",
            "provider_model": "meta-llama/Meta-Llama-3-70B-Instruct", "host_class": "8xA100",
            "context_window": 8192, "max_output_tokens": 4096, "monthly_usd": "75000",
            # concurrency 2 x max_num_seqs: the engine's own queue absorbs the gap while finished jobs'
            # replacements arrive from the broker (measured: 76% of offline throughput at 1x, 98% at 2x).
            "capacity_tokens_per_s": 12000, "p95_target_ms": 650, "concurrency": 512, "timeout_s": 300,
            "engine": {"tensor_parallel_size": 8, "max_model_len": 8192, "max_num_seqs": 256},
        },
        "mistral-7b": {
            "provider": "vllm", "queue": "mistral-7b", "display_name": "Mistral 7B",
            "provider_model": "mistralai/Mistral-7B-Instruct-v0.3", "host_class": "4xL40S",
            "context_window": 32768, "max_output_tokens": 4096, "monthly_usd": "25000",
            "capacity_tokens_per_s": 25000, "p95_target_ms": 180, "concurrency": 512, "timeout_s": 300,
            "fallback": ["llama-3-70b"],
            "engine": {"tensor_parallel_size": 4, "max_model_len": 32768, "max_num_seqs": 256},
        },
        "gpt-4-turbo": {
            "provider": "openai", "queue": "gpt-4-turbo", "display_name": "GPT-4 Turbo",
            "provider_model": "gpt-4-turbo", "context_window": 128000, "max_output_tokens": 4096,
            "input_usd_per_mtok": "10", "output_usd_per_mtok": "30", "rpm": 600, "tpm": 150000,
            "concurrency": 32, "timeout_s": 120, "fallback": ["claude-3-opus", "llama-3-70b"],
        },
        "claude-3-opus": {
            "provider": "anthropic", "queue": "claude-3-opus", "display_name": "Claude 3 Opus",
            "provider_model": "claude-3-opus-20240229", "context_window": 200000, "max_output_tokens": 4096,
            "input_usd_per_mtok": "15", "output_usd_per_mtok": "75", "rpm": 300, "tpm": 100000,
            "concurrency": 32, "timeout_s": 300, "fallback": ["gpt-4-turbo", "llama-3-70b"],
        },
    },
}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _locate(lines: list[str], loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number (1-based) of a dotted key in a TOML file, for error messages."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    # Find the deepest table header that is a prefix of the path, then the key below it.
    best_line, best_depth = None, -1
    for i, raw in enumerate(lines, 1):
        s = raw.strip()
        if s.startswith("[") and not s.startswith("[["):
            parts = [p.strip().strip('"').strip("'") for p in s.strip("[]").split(".")]
            # Rejoin quoted names containing dots, e.g. [models."gpt-4-turbo"] has none, but be safe.
            if parts == keys[: len(parts)] and len(parts) > best_depth:
                best_line, best_depth = i, len(parts)
    start = best_line or 0
    leaf = keys[best_depth:] if best_depth >= 0 else keys
    if not leaf:
        return best_line
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if i + 1 != start and s.startswith("[") and best_line is not None:
            break
        name = s.split("=", 1)[0].strip().strip('"') if "=" in s else ""
        if name in (leaf[0], ".".join(leaf)):
            return i + 1
    return best_line


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalog: built-in defaults, overridden by the TOML file at ``path`` when given."""
    override: dict[str, Any] = {}
    lines: list[str] = []
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read configuration: {exc.strerror or exc}") from exc
        lines = text.splitlines()
        try:
            override = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    try:
        return Catalog.model_validate(_deep_merge(DEFAULTS, override))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(k) for k in loc) or "(top level)"
            line = _locate(lines, loc) if lines else None
            where = f"{path}:{line}: " if line else (f"{path}: " if path else "")
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}{key}: {msg}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
