"""InProcessVLLMBackend: one warm vLLM async engine inside the worker process.

The engine is built once per worker process, at start-up, from the catalog's engine arguments, with the
current async engine (``vllm.v1.engine.async_llm.AsyncLLM.from_engine_args``; ``vllm.AsyncLLMEngine`` on
older vLLM or with ``VLLM_USE_V1=0``), and kept warm. Many ``generate`` calls run concurrently on the runner's
event loop (:mod:`workers.engines.runner`), which is what lets vLLM batch them continuously. vllm is imported
lazily, inside functions, so that everything else imports and tests without it.

Traps, and how this module and the worker avoid them:

- **CUDA before fork.** CUDA initialised in a parent breaks a forked child ("Cannot re-initialize CUDA in
  forked subprocess"). The engine is created only in the process that uses it, after any fork: the worker
  runs Celery's *threads* pool (no fork), and nothing here touches CUDA before :meth:`load`.
- **Daemonic prefork children** cannot start processes ("daemonic processes are not allowed to have
  children"), and vLLM starts its own (EngineCore, tensor-parallel workers). Another reason for threads.
- **Signals and start-up hooks.** ``worker_process_init`` is never sent by the threads pool, and its handlers
  are killed after 4 s anyway; the engine is built from ``worker_init``/``worker_ready`` in the worker's main
  process (``BackendRunner.start()`` there). vLLM 0.7.x-0.8.1's V1 client installed signal handlers, which
  only works on the main thread: with those versions call :meth:`load` on the main thread before starting
  the runner (it is idempotent); later versions build fine on the runner's thread.
- **Fork with threads.** By the time the engine is built the worker has threads (broker connection, pool),
  and vLLM forks its EngineCore by default; :meth:`load` sets ``VLLM_WORKER_MULTIPROC_METHOD=spawn`` unless
  already set. Spawn re-imports ``__main__``, so entry points need a ``__main__`` guard (console scripts have
  one).
- **Double BOS.** A chat template's output already starts with the BOS token, and vLLM adds special tokens
  when it tokenizes a text prompt; we tokenize with ``add_special_tokens=False`` and pass token ids.
- **A dead engine stays dead.** After a CUDA OOM or an EngineCore crash vLLM raises EngineDeadError for
  every request; only a new process recovers. All of it maps to :class:`switchyard.errors.EngineDeadError`
  (the job is requeued and the worker exits). Cancelled requests are aborted in the engine.

prompt + max_tokens above the engine's max_model_len raises :class:`ContextLengthExceeded` before the request
reaches vLLM (vLLM alone would silently stop at the limit), the same as the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from switchyard.errors import (
    ConfigError,
    ContextLengthExceeded,
    EngineDeadError,
    EngineRequestError,
    RetryableError,
    SwitchyardError,
)
from switchyard.tokens import message_text
from workers.engines.base import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

#: ``request.extra`` keys passed on to SamplingParams (anything else in extra is ignored here).
SAMPLING_EXTRAS = frozenset({
    "seed", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_tokens",
    "stop_token_ids", "ignore_eos", "include_stop_str_in_output", "skip_special_tokens",
})
_CORE_ARGS = frozenset(
    {"model", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_num_seqs", "dtype"}
)
# Matched by class name so that every vLLM version (and torch, which we never import) is covered.
_DEAD_TYPES = frozenset({"EngineDeadError", "AsyncEngineDeadError", "MQEngineDeadError", "OutOfMemoryError"})
_DEAD_MARKERS = ("CUDA out of memory", "CUDA error", "NCCL error", "CUBLAS_STATUS")
_CLIENT_ERROR_TYPES = frozenset({"VLLMValidationError", "VLLMClientError"})
_CONTEXT_MARKERS = ("maximum model length", "maximum context length", "context length", "prompt is too long")


@dataclass(frozen=True, slots=True)
class VLLMEngineConfig:
    """What the engine is built from (the catalog's ``[models.X.engine]``)."""

    served_model: str  # the name results report, e.g. "llama-3-70b"
    model_path: str  # local directory (or hub id, where the host can reach the hub)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.90
    max_model_len: int | None = None  # None: the model's own
    max_num_seqs: int | None = None  # None: vLLM's default
    dtype: str = "auto"
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other AsyncEngineArgs field, passed through

    @classmethod
    def from_fields(cls, *, served_model: str, served_model_name: str = "", base_urls: Any = (),
                    **fields: Any) -> VLLMEngineConfig:
        """From the catalog's engine fields as keywords (``spec.engine.model_dump()``); the remote-only
        ``served_model_name`` and ``base_urls`` are accepted and ignored."""
        return cls(served_model=served_model, **fields)


def engine_args_kwargs(config: VLLMEngineConfig) -> dict[str, Any]:
    """Keyword arguments for ``AsyncEngineArgs``."""
    if not config.model_path:
        raise ConfigError(f"models.{config.served_model}.engine.model_path is not set (or pass --model-path)")
    clash = sorted(set(config.extra) & _CORE_ARGS)
    if clash:
        raise ConfigError(f"engine extra arguments repeat first-class settings: {', '.join(clash)}")
    kwargs: dict[str, Any] = {
        "model": config.model_path,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.max_num_seqs is not None:
        kwargs["max_num_seqs"] = config.max_num_seqs
    kwargs.update(config.extra)
    return kwargs


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments for ``SamplingParams``; unset options keep vLLM's (the model's) defaults."""
    kwargs: dict[str, Any] = {"max_tokens": request.max_tokens}
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.stop:
        kwargs["stop"] = list(request.stop)
    kwargs.update({k: v for k, v in request.extra.items() if k in SAMPLING_EXTRAS})
    return kwargs


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Chat messages -> prompt token ids through the model's chat template (see "Double BOS")."""
    normalized = [m if isinstance(m.get("content"), str) else {**m, "content": message_text(m.get("content"))}
                  for m in messages]
    rendered = tokenizer.apply_chat_template(normalized, tokenize=False, add_generation_prompt=True)
    if isinstance(rendered, list):  # tokenizers that always return ids (vLLM's MistralTokenizer)
        return [int(t) for t in rendered]
    return list(tokenizer.encode(rendered, add_special_tokens=False))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (AsyncLLM wraps unexpected errors: EngineGenerateError from the real one)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def classify_error(exc: BaseException) -> SwitchyardError:
    """Map an exception out of vLLM's generate() onto the Switchyard error tree."""
    chain = _chain(exc)
    for e in chain:
        names = {c.__name__ for c in type(e).__mro__}
        if names & _DEAD_TYPES or (isinstance(e, RuntimeError) and any(m in str(e) for m in _DEAD_MARKERS)):
            return EngineDeadError(f"vLLM engine is dead: {_describe(e)}")
    for e in chain:
        names = {c.__name__ for c in type(e).__mro__}
        if isinstance(e, ValueError) or names & _CLIENT_ERROR_TYPES:
            if any(m in str(e).lower() for m in _CONTEXT_MARKERS):
                return ContextLengthExceeded(f"vLLM rejected the prompt: {_describe(e)}")
            return EngineRequestError(f"vLLM rejected the request: {_describe(e)}")
    # EngineGenerateError and the unforeseen: vLLM calls them recoverable, so the job is tried again later.
    return RetryableError(f"vLLM failed the request: {_describe(exc)}")


def _engine_queue_s(metrics: Any) -> float:
    """Time before first scheduling, from whichever metrics this vLLM version fills (0.0 when none)."""
    if metrics is None:
        return 0.0
    in_queue = getattr(metrics, "time_in_queue", None)  # V0 RequestMetrics
    if isinstance(in_queue, int | float) and in_queue >= 0:
        return float(in_queue)
    queued, scheduled = getattr(metrics, "queued_ts", 0.0), getattr(metrics, "scheduled_ts", 0.0)  # V1
    if isinstance(queued, int | float) and isinstance(scheduled, int | float) and 0 < queued <= scheduled:
        return float(scheduled - queued)
    return 0.0


def to_result(output: Any, *, model: str, inference_s: float, ttft_s: float | None,
              prompt_tokens: int) -> GenerationResult:
    """A final RequestOutput -> GenerationResult, with the engine's own token counts."""
    if not getattr(output, "finished", True) or not output.outputs:
        raise RetryableError("vLLM ended the request without a final output")
    completion = output.outputs[0]
    if completion.finish_reason == "abort":
        raise RetryableError("vLLM aborted the request")
    prompt_ids = getattr(output, "prompt_token_ids", None)
    return GenerationResult(
        text=completion.text,
        finish_reason="length" if completion.finish_reason == "length" else "stop",
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else prompt_tokens,
        completion_tokens=len(completion.token_ids),
        model=model,
        inference_s=inference_s,
        time_to_first_token_s=ttft_s,
        engine_queue_s=_engine_queue_s(getattr(output, "metrics", None)),
        simulated=False,
        extra={"stop_reason": completion.stop_reason} if getattr(completion, "stop_reason", None) else {},
    )


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _engine_class() -> Any:
    if os.environ.get("VLLM_USE_V1") != "0":
        try:
            from vllm.v1.engine.async_llm import AsyncLLM

            return AsyncLLM
        except ImportError:  # vLLM before the V1 engine
            pass
    from vllm import AsyncLLMEngine

    return AsyncLLMEngine


class InProcessVLLMBackend:
    """A :class:`~workers.engines.base.Backend` around a warm in-process vLLM engine."""

    kind = "vllm-inprocess"
    simulated = False

    def __init__(self, config: VLLMEngineConfig | None = None, **engine_fields: Any) -> None:
        """``InProcessVLLMBackend(config)``, or the worker's form:
        ``InProcessVLLMBackend(served_model=name, **spec.engine.model_dump())``."""
        if (config is None) == (not engine_fields):
            raise TypeError("pass either a VLLMEngineConfig or engine fields with served_model=")
        self.config = config if config is not None else VLLMEngineConfig.from_fields(**engine_fields)
        self.load_s: float | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._max_model_len: int | None = None
        self._dead: str | None = None

    def load(self) -> float:
        """Build the engine (blocking, minutes for a 70B model); idempotent. Returns the load time."""
        if self._engine is not None:
            return self.load_s or 0.0
        kwargs = engine_args_kwargs(self.config)
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # see "Fork with threads"
        t0 = time.perf_counter()
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
        except ImportError as exc:
            raise ConfigError("vllm is not installed; install switchyard[gpu] on the GPU host") from exc
        try:
            args = AsyncEngineArgs(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"invalid vLLM engine argument: {exc}") from exc
        try:
            self._engine = _engine_class().from_engine_args(args)
        except Exception as exc:
            err = classify_error(exc)
            if isinstance(err, EngineDeadError):
                raise err from exc
            if "main thread" in str(exc):
                raise ConfigError("this vLLM must be built on the main thread: call load() from worker_init "
                                  "before starting the runner, or upgrade vllm") from exc
            where = self.config.model_path
            raise ConfigError(f"cannot load vLLM engine from {where}: {_describe(exc)}") from exc
        self.load_s = time.perf_counter() - t0
        logger.info("vLLM engine for %s loaded from %s in %.1f s (tp=%s)", self.config.served_model,
                    self.config.model_path, self.load_s, self.config.tensor_parallel_size)
        return self.load_s

    async def start(self) -> None:
        if self._engine is None:
            self.load()  # on the loop thread, so the engine's own tasks bind to this loop
        self._tokenizer = await _maybe_await(self._engine.get_tokenizer())
        self._max_model_len = await self._engine_max_model_len()
        try:
            render_prompt(self._tokenizer, [{"role": "user", "content": "ping"}])
        except Exception as exc:
            raise ConfigError(f"{self.config.model_path}: the tokenizer has no usable chat template "
                              f"({_describe(exc)})") from exc

    async def _engine_max_model_len(self) -> int | None:
        model_config = getattr(self._engine, "model_config", None)  # AsyncLLM
        if model_config is None and hasattr(self._engine, "get_model_config"):  # AsyncLLMEngine
            model_config = await _maybe_await(self._engine.get_model_config())
        value = getattr(model_config, "max_model_len", None)
        return int(value) if isinstance(value, int) else self.config.max_model_len

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._dead is not None:
            raise EngineDeadError(self._dead)
        engine = self._engine
        if engine is None or self._tokenizer is None:
            raise EngineDeadError(f"vLLM engine for {self.config.served_model} is not running")
        if request.max_tokens < 1:
            raise EngineRequestError(f"max_tokens must be at least 1 (got {request.max_tokens})")
        try:
            prompt_ids = render_prompt(self._tokenizer, request.messages)
        except Exception as exc:
            raise EngineRequestError(f"chat template failed on these messages: {_describe(exc)}") from exc
        limit = self._max_model_len
        if limit is not None and len(prompt_ids) + request.max_tokens > limit:
            raise ContextLengthExceeded(
                f"{self.config.served_model}: prompt ({len(prompt_ids)} tokens) + max_tokens "
                f"({request.max_tokens}) exceeds the context of {limit} tokens"
            )
        from vllm import SamplingParams

        try:
            params = SamplingParams(**sampling_kwargs(request))
        except Exception as exc:  # ValueError, or VLLMValidationError on recent vLLM
            raise EngineRequestError(f"invalid sampling parameters: {_describe(exc)}") from exc

        t0 = time.perf_counter()
        first_token_at: float | None = None
        final: Any = None
        try:
            async for output in engine.generate({"prompt_token_ids": prompt_ids}, params, request.request_id):
                if first_token_at is None and output.outputs and output.outputs[0].token_ids:
                    first_token_at = time.perf_counter()
                final = output
        except asyncio.CancelledError:
            await self._abort(request.request_id)
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        if final is None:
            raise RetryableError("vLLM returned no output")
        return to_result(final, model=self.config.served_model, inference_s=time.perf_counter() - t0,
                         ttft_s=None if first_token_at is None else first_token_at - t0,
                         prompt_tokens=len(prompt_ids))

    def _failure(self, exc: Exception) -> SwitchyardError:
        err = classify_error(exc)
        if not isinstance(err, EngineDeadError) and getattr(self._engine, "errored", False) is True:
            err = EngineDeadError(f"vLLM engine is dead after {_describe(exc)}")
        if isinstance(err, EngineDeadError) and self._dead is None:
            self._dead = str(err)
            logger.error("vLLM engine for %s is dead: %s", self.config.served_model, self._dead)
        return err

    async def _abort(self, request_id: str) -> None:
        abort = getattr(self._engine, "abort", None)
        if abort is None:
            return
        with contextlib.suppress(Exception):  # nothing to do if the engine is gone
            await _maybe_await(abort(request_id))
        logger.info("aborted vLLM request %s", request_id)

    async def shutdown(self) -> None:
        engine, self._engine = self._engine, None
        self._dead = self._dead or "vLLM engine shut down"
        if engine is None:
            return
        for name in ("shutdown", "shutdown_background_loop"):  # AsyncLLM, then AsyncLLMEngine
            stop = getattr(engine, name, None)
            if callable(stop):
                try:
                    await _maybe_await(stop())
                except Exception:
                    logger.warning("vLLM engine shutdown failed", exc_info=True)
                break
        logger.info("vLLM engine for %s shut down", self.config.served_model)
