"""InProcessVLLMBackend against a fake ``vllm`` package injected into sys.modules.

The fake mirrors the parts of vLLM's API the adapter uses (AsyncEngineArgs, AsyncLLM.from_engine_args,
get_tokenizer, generate() as an async generator of cumulative RequestOutputs, abort, shutdown, and vLLM's
exception classes) so that argument building, output conversion and error mapping are checked without a GPU.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from switchyard.catalog import EngineArgs
from switchyard.errors import (
    ConfigError,
    ContextLengthExceeded,
    EngineDeadError,
    EngineRequestError,
    RetryableError,
)
from workers.engines.base import Backend, GenerationRequest
from workers.engines.runner import BackendRunner
from workers.engines.vllm_local import InProcessVLLMBackend, VLLMEngineConfig

BOS = 1


class FakeTokenizer:
    chat_template: str | None = "fake"

    def apply_chat_template(self, messages: list[dict[str, Any]], *, tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert tokenize is False and add_generation_prompt is True
        if self.chat_template is None:
            raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")
        return "<s> " + " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [BOS if w == "<s>" else 100 + len(w) for w in text.split()]
        return [BOS, *ids] if add_special_tokens else ids


@dataclass
class FakeEngineArgs:
    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    disable_log_stats: bool = False


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("temperature", 0) < 0:
            raise ValueError("temperature must be non-negative")
        self.kwargs = kwargs


def _output(request_id: str, prompt_ids: list[int], n_tokens: int, *, finished: bool,
            finish_reason: str | None = None, metrics: Any = None) -> SimpleNamespace:
    completion = SimpleNamespace(text=" ".join(["tok"] * n_tokens), token_ids=list(range(n_tokens)),
                                 finish_reason=finish_reason, stop_reason=None)
    return SimpleNamespace(request_id=request_id, prompt_token_ids=prompt_ids, outputs=[completion],
                           finished=finished, metrics=metrics)


Behaviour = Callable[[dict[str, Any], FakeSamplingParams, str], AsyncIterator[Any]]


async def _normal(prompt: dict[str, Any], params: FakeSamplingParams, request_id: str) -> AsyncIterator[Any]:
    ids, n = prompt["prompt_token_ids"], min(params.kwargs["max_tokens"], 6)
    for i in range(1, n):
        await asyncio.sleep(0)
        yield _output(request_id, ids, i, finished=False)
    reason = "length" if n == params.kwargs["max_tokens"] else "stop"
    yield _output(request_id, ids, n, finished=True, finish_reason=reason,
                  metrics=SimpleNamespace(queued_ts=10.0, scheduled_ts=10.25))


@dataclass
class FakeAsyncLLM:
    args: FakeEngineArgs
    behaviour: Behaviour = _normal
    errored: bool = False
    aborted: list[str] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    params: list[FakeSamplingParams] = field(default_factory=list)
    shut_down: bool = False
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    model_config: Any = None

    @classmethod
    def from_engine_args(cls, args: FakeEngineArgs) -> FakeAsyncLLM:
        engine = cls(args, model_config=SimpleNamespace(max_model_len=args.max_model_len or 4096))
        built.append(engine)
        return engine

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    async def generate(self, prompt: dict[str, Any], sampling_params: FakeSamplingParams,
                       request_id: str) -> AsyncIterator[Any]:
        self.prompts.append(prompt)
        self.params.append(sampling_params)
        async for out in self.behaviour(prompt, sampling_params, request_id):
            yield out

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        self.shut_down = True


class FakeV0Engine(FakeAsyncLLM):
    pass


built: list[FakeAsyncLLM] = []


def _module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """Install a fake vllm (current layout: vllm.v1 AsyncLLM, VLLMValidationError not a ValueError)."""
    built.clear()
    exc_v1 = types.SimpleNamespace(
        EngineDeadError=type("EngineDeadError", (Exception,), {}),
        EngineGenerateError=type("EngineGenerateError", (Exception,), {}),
    )
    client_error = type("VLLMClientError", (Exception,), {})
    validation_error = type("VLLMValidationError", (client_error,), {})
    _module(monkeypatch, "vllm", SamplingParams=FakeSamplingParams, AsyncLLMEngine=FakeV0Engine)
    _module(monkeypatch, "vllm.engine")
    _module(monkeypatch, "vllm.engine.arg_utils", AsyncEngineArgs=FakeEngineArgs)
    _module(monkeypatch, "vllm.exceptions",
            VLLMClientError=client_error, VLLMValidationError=validation_error)
    _module(monkeypatch, "vllm.v1")
    _module(monkeypatch, "vllm.v1.engine")
    _module(monkeypatch, "vllm.v1.engine.async_llm", AsyncLLM=FakeAsyncLLM)
    _module(monkeypatch, "vllm.v1.engine.exceptions", **vars(exc_v1))
    monkeypatch.delenv("VLLM_USE_V1", raising=False)
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    yield SimpleNamespace(built=built, ValidationError=validation_error, **vars(exc_v1))


def _config(**overrides: Any) -> VLLMEngineConfig:
    base: dict[str, Any] = {"served_model": "llama-3-70b", "model_path": "/models/llama-3-70b",
                            "max_model_len": 4096}
    return VLLMEngineConfig(**{**base, **overrides})


def _request(i: int = 0, **kw: Any) -> GenerationRequest:
    args: dict[str, Any] = {"max_tokens": 100, **kw}
    return GenerationRequest(f"req-{i}", [{"role": "user", "content": f"hello number {i}"}], **args)


async def _started(config: VLLMEngineConfig | None = None) -> InProcessVLLMBackend:
    backend = InProcessVLLMBackend(config or _config())
    await backend.start()
    return backend


# --- building the engine ------------------------------------------------------------------------------

def test_engine_is_built_from_catalog_arguments_with_passthrough_extras(fake_vllm: SimpleNamespace) -> None:
    catalog_args = EngineArgs(model_path="/models/l3", tensor_parallel_size=8, gpu_memory_utilization=0.85,
                              max_model_len=8192, max_num_seqs=256, dtype="bfloat16")
    # The worker's call: the catalog's engine fields as keywords (remote-only ones included).
    backend = InProcessVLLMBackend(served_model="llama-3-70b", **catalog_args.model_dump(),
                                   extra={"enforce_eager": True})
    assert isinstance(backend, Backend) and not backend.simulated
    assert backend.load() >= 0
    (engine,) = fake_vllm.built
    assert type(engine) is FakeAsyncLLM  # the V1 AsyncLLM, not the legacy class
    assert engine.args == FakeEngineArgs(
        model="/models/l3", tensor_parallel_size=8, gpu_memory_utilization=0.85, max_model_len=8192,
        max_num_seqs=256, dtype="bfloat16", enforce_eager=True,
    )
    backend.load()  # idempotent: one engine per process
    assert len(fake_vllm.built) == 1


def test_model_path_override_and_legacy_engine_fallback(fake_vllm: SimpleNamespace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_USE_V1", "0")
    fields = {**EngineArgs().model_dump(), "model_path": "/tmp/tiny"}  # as --model-path overrides it
    InProcessVLLMBackend(served_model="mistral-7b", **fields).load()
    assert type(fake_vllm.built[0]) is FakeV0Engine
    assert fake_vllm.built[0].args.model == "/tmp/tiny"


@pytest.mark.parametrize(("config", "message"), [
    (_config(model_path=""), "model_path is not set"),
    (_config(extra={"dtype": "half"}), "dtype"),
    (_config(extra={"no_such_arg": 1}), "no_such_arg"),
])
def test_bad_engine_configuration_is_a_config_error(fake_vllm: SimpleNamespace, config: VLLMEngineConfig,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InProcessVLLMBackend(config).load()


def test_constructor_takes_a_config_or_fields_not_both() -> None:
    with pytest.raises(TypeError):
        InProcessVLLMBackend()
    with pytest.raises(TypeError):
        InProcessVLLMBackend(_config(), served_model="x")


def test_missing_vllm_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "vllm.engine.arg_utils", None)
    with pytest.raises(ConfigError, match="vllm is not installed"):
        InProcessVLLMBackend(_config()).load()


def test_tokenizer_without_chat_template_fails_at_start(fake_vllm: SimpleNamespace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeTokenizer, "chat_template", None)
    with pytest.raises(ConfigError, match="chat template"):
        asyncio.run(_started())


# --- requests and results ---------------------------------------------------------------------------

def test_chat_prompt_sampling_params_and_result_conversion(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> Any:
        backend = await _started()
        request = _request(1, temperature=0.2, top_p=0.9, stop=["\n\n"],
                           extra={"seed": 7, "simulated_output_tokens": 3})
        return backend, await backend.generate(request)

    backend, result = asyncio.run(scenario())
    engine = fake_vllm.built[0]
    prompt_ids = engine.prompts[0]["prompt_token_ids"]
    assert prompt_ids[0] == BOS and prompt_ids.count(BOS) == 1  # the template's BOS, not a second one
    assert engine.params[0].kwargs == {"max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"],
                                       "seed": 7}
    assert result.text == "tok tok tok tok tok tok"
    assert (result.completion_tokens, result.prompt_tokens) == (6, len(prompt_ids))
    assert result.finish_reason == "stop" and result.model == "llama-3-70b" and not result.simulated
    assert result.engine_queue_s == pytest.approx(0.25)
    assert result.time_to_first_token_s is not None
    assert 0 <= result.time_to_first_token_s <= result.inference_s


def test_unset_sampling_options_keep_vllm_defaults_and_length_is_reported(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> Any:
        return await (await _started()).generate(_request(2, max_tokens=4))

    result = asyncio.run(scenario())
    assert fake_vllm.built[0].params[0].kwargs == {"max_tokens": 4}
    assert (result.finish_reason, result.completion_tokens) == ("length", 4)


def test_prompt_plus_max_tokens_beyond_the_context_never_reaches_vllm(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> None:
        backend = await _started(_config(max_model_len=50))
        await backend.generate(_request(3, max_tokens=48))

    with pytest.raises(ContextLengthExceeded, match="50"):
        asyncio.run(scenario())
    assert fake_vllm.built[0].prompts == []


def test_invalid_sampling_parameters_are_a_request_error(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> None:
        await (await _started()).generate(_request(4, temperature=-1.0))

    with pytest.raises(EngineRequestError, match="temperature"):
        asyncio.run(scenario())


def test_cancelled_request_is_aborted_in_the_engine(fake_vllm: SimpleNamespace) -> None:
    async def hang(prompt: dict[str, Any], params: FakeSamplingParams, request_id: str) -> AsyncIterator[Any]:
        yield _output(request_id, prompt["prompt_token_ids"], 1, finished=False)
        await asyncio.sleep(3600)

    async def scenario() -> list[str]:
        backend = await _started()
        fake_vllm.built[0].behaviour = hang
        task = asyncio.ensure_future(backend.generate(_request(5)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return fake_vllm.built[0].aborted

    assert asyncio.run(scenario()) == ["req-5"]


# --- errors -------------------------------------------------------------------------------------------

def _raising(make: Callable[[SimpleNamespace], BaseException]) -> Callable[[SimpleNamespace], Behaviour]:
    def behaviour_for(fake: SimpleNamespace) -> Behaviour:
        async def behaviour(prompt: dict[str, Any], params: Any, request_id: str) -> AsyncIterator[Any]:
            yield _output(request_id, prompt["prompt_token_ids"], 1, finished=False)
            raise make(fake)
        return behaviour
    return behaviour_for


def _wrapped(fake: SimpleNamespace, cause: BaseException) -> BaseException:
    """AsyncLLM.generate wraps unexpected errors: ``raise EngineGenerateError() from e``."""
    err = fake.EngineGenerateError()
    err.__cause__ = cause
    return err


_TorchOOM = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch.cuda"})
_AsyncEngineDeadError = type("AsyncEngineDeadError", (RuntimeError,), {})

DEAD_CASES = {
    "v1 EngineDeadError": _raising(lambda f: f.EngineDeadError()),
    "v0 AsyncEngineDeadError": _raising(lambda f: _AsyncEngineDeadError("Background loop has errored")),
    "torch OOM wrapped": _raising(lambda f: _wrapped(f, _TorchOOM("CUDA out of memory. Tried to allocate"))),
    "CUDA RuntimeError": _raising(lambda f: RuntimeError("CUDA error: an illegal memory access")),
}


@pytest.mark.parametrize("case", list(DEAD_CASES))
def test_dead_engine_errors_become_engine_dead_and_stick(fake_vllm: SimpleNamespace, case: str) -> None:
    async def scenario() -> list[BaseException]:
        backend = await _started()
        engine = fake_vllm.built[0]
        engine.behaviour = DEAD_CASES[case](fake_vllm)
        errors: list[BaseException] = []
        for i in range(2):
            try:
                await backend.generate(_request(i))
            except Exception as exc:
                errors.append(exc)
        return errors

    first, second = asyncio.run(scenario())
    assert isinstance(first, EngineDeadError)
    assert isinstance(second, EngineDeadError)
    assert len(fake_vllm.built[0].prompts) == 1  # the second request was refused without reaching vLLM


REQUEST_CASES = {
    "prompt too long (ValueError)": (
        _raising(lambda f: ValueError("The decoder prompt (length 9000) is longer than the maximum model "
                                      "length of 8192. Make sure that `max_model_len` is no smaller")),
        ContextLengthExceeded),
    "validation error (not a ValueError on recent vLLM)": (
        _raising(lambda f: f.ValidationError("logprobs must be at most 20")), EngineRequestError),
    "recoverable generate error": (_raising(lambda f: _wrapped(f, KeyError("req-0"))), RetryableError),
}


@pytest.mark.parametrize("case", list(REQUEST_CASES))
def test_request_level_errors_fail_only_that_request(fake_vllm: SimpleNamespace, case: str) -> None:
    behaviour_for, expected = REQUEST_CASES[case]

    async def scenario() -> tuple[BaseException | None, Any]:
        backend = await _started()
        fake_vllm.built[0].behaviour = behaviour_for(fake_vllm)
        caught: BaseException | None = None
        try:
            await backend.generate(_request(0))
        except Exception as exc:
            caught = exc
        fake_vllm.built[0].behaviour = _normal
        return caught, await backend.generate(_request(1))

    caught, later = asyncio.run(scenario())
    assert type(caught) is expected
    assert later.completion_tokens == 6  # the engine is still usable


def test_generic_error_on_an_errored_engine_is_engine_dead(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> None:
        backend = await _started()
        engine = fake_vllm.built[0]
        engine.behaviour = _raising(lambda f: _wrapped(f, KeyError("x")))(fake_vllm)
        engine.errored = True
        await backend.generate(_request(0))

    with pytest.raises(EngineDeadError):
        asyncio.run(scenario())


def test_shutdown_releases_the_engine_and_refuses_later_requests(fake_vllm: SimpleNamespace) -> None:
    async def scenario() -> None:
        backend = await _started()
        await backend.shutdown()
        assert fake_vllm.built[0].shut_down
        await backend.generate(_request(0))

    with pytest.raises(EngineDeadError):
        asyncio.run(scenario())


# --- through the runner, as a worker uses it ----------------------------------------------------------

def test_through_the_runner_many_threads_then_a_dead_engine(fake_vllm: SimpleNamespace) -> None:
    runner = BackendRunner(InProcessVLLMBackend(_config()), name="test-runner-vllm")
    assert runner.start(timeout=10) >= 0
    try:
        futures = [runner.submit(_request(i)) for i in range(50)]
        assert all(f.result(timeout=10).completion_tokens == 6 for f in futures)
        fake_vllm.built[0].behaviour = DEAD_CASES["v1 EngineDeadError"](fake_vllm)
        with pytest.raises(EngineDeadError):
            runner.generate(_request(99), timeout=10)
        assert not runner.healthy and runner.dead_reason
    finally:
        runner.stop(timeout=10)
    assert fake_vllm.built[0].shut_down
