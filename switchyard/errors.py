"""The one exception tree of Switchyard.

Everything raised on purpose derives from :class:`SwitchyardError`. The two branches that matter to the
queue are :class:`RetryableError` (the worker retries the job later, honouring ``retry_after``) and
:class:`FatalError` (the job fails at once and is dead-lettered). :class:`EngineDeadError` is neither: the
job was fine, the process is not, so the job goes back to the queue and the worker exits.
"""

from __future__ import annotations


class SwitchyardError(Exception):
    """Root of every error Switchyard raises on purpose."""

    #: Stable machine-readable code, written into failed results (``error.code``).
    code: str = "switchyard_error"


class RetryableError(SwitchyardError):
    """A transient failure: run the job again later."""

    code = "retryable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the caller should wait before retrying, when the cause says so (e.g. Retry-After).
        self.retry_after = retry_after


class FatalError(SwitchyardError):
    """A permanent failure: retrying cannot help; fail the job and dead-letter it."""

    code = "fatal"


# --- configuration and input -------------------------------------------------------------------------


class ConfigError(FatalError):
    """The TOML catalog or the environment is invalid. Raised at start-up."""

    code = "config_error"


class InputError(FatalError):
    """A job file or job object is invalid. Carries every problem found, each naming line and field."""

    code = "invalid_input"

    def __init__(self, problems: list[InputProblem]) -> None:
        self.problems = problems
        head = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} invalid job(s): {head}{more}")


#: The ``field`` of a problem that concerns the whole line (or item) rather than one of its fields.
WHOLE_LINE = "(line)"


class InputProblem:
    """One problem in the input: where (line, field) and what."""

    __slots__ = ("line", "field", "message")

    def __init__(self, line: int | None, field: str, message: str) -> None:
        self.line = line
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "job"
        # A problem of the whole line (not JSON, not an object) names no field: "line 2: (line): ..." read
        # as if it named two lines.
        return f"{where}: {self.message}" if self.field == WHOLE_LINE else f"{where}: {self.field}: {self.message}"

    def __repr__(self) -> str:
        return f"InputProblem({self.line!r}, {self.field!r}, {self.message!r})"


# --- lookups (the client and the command line) ---------------------------------------------------------


class NotFound(SwitchyardError):
    """A batch or job the caller named does not exist. The command line exits 2 (bad input)."""

    code = "not_found"


class BatchNotFound(NotFound):
    """No batch has that name or id."""

    code = "batch_not_found"


class JobNotFound(NotFound, KeyError):
    """No job has that id. Also a KeyError: ``Client.result`` raised a bare KeyError before, and callers that
    catch that keep working."""

    code = "job_not_found"

    __str__ = Exception.__str__  # KeyError's would quote the message


# --- policy --------------------------------------------------------------------------------------------


class PIIPolicyViolation(FatalError):
    """A job carrying PII or secrets was about to reach a commercial model. Never retried."""

    code = "pii_policy_violation"


class BudgetExceeded(FatalError):
    """The job's commercial cost would exceed a tenant's (or the global) monthly budget."""

    code = "budget_exceeded"


class ContextLengthExceeded(FatalError):
    """The prompt does not fit the model's context window (and splitting was refused)."""

    code = "context_length_exceeded"


class JobAttemptsExhausted(FatalError):
    """The job was delivered too many times (it keeps killing workers, or keeps failing)."""

    code = "attempts_exhausted"


# --- engines (self-hosted) -----------------------------------------------------------------------------


class EngineError(SwitchyardError):
    """An inference engine failed."""

    code = "engine_error"


class EngineDeadError(EngineError):
    """The engine is unusable (vLLM's EngineDeadError, CUDA out of memory): the process must restart.

    The job itself is not at fault: it is handed back to the queue and the worker exits non-zero.
    """

    code = "engine_dead"


class EngineOverloadedError(EngineError, RetryableError):
    """The engine refused the request for now (queue full); try again shortly."""

    code = "engine_overloaded"


class EngineRequestError(EngineError, FatalError):
    """The engine rejected this request itself (e.g. invalid parameters)."""

    code = "engine_bad_request"


# --- commercial providers ------------------------------------------------------------------------------


class ProviderError(SwitchyardError):
    """A commercial provider (OpenAI, Anthropic) or an OpenAI-compatible server failed."""

    code = "provider_error"

    def __init__(self, message: str, *, provider: str, status: int | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[call-arg]
        self.provider = provider
        #: HTTP status, when there was a response.
        self.status = status


class ProviderRetryableError(ProviderError, RetryableError):
    """408, 409, 429, 5xx, timeouts, dropped connections, malformed bodies."""

    code = "provider_unavailable"


class ProviderRateLimited(ProviderRetryableError):
    """429 from the provider: slow the shared limiter down and retry after ``retry_after``."""

    code = "provider_rate_limited"


class ProviderFatalError(ProviderError, FatalError):
    """400, 401, 403, 404, 422: the request itself is wrong or not allowed."""

    code = "provider_rejected"


class CircuitOpenError(RetryableError):
    """The provider's circuit is open after repeated failures; do not call it until ``retry_after``."""

    code = "circuit_open"


class ProviderNotConfigured(ConfigError):
    """A real worker for a commercial model was started without an API key."""

    code = "provider_not_configured"
