"""SimulatedEngine: calibration against the decision record, batching, errors and fault injection."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from switchyard.errors import ConfigError, ContextLengthExceeded, EngineDeadError, EngineRequestError
from switchyard.tokens import estimate_messages_tokens
from workers.engines.base import Backend, GenerationRequest, GenerationResult
from workers.engines.simulated import (
    PRESETS,
    SATURATION_LOAD,
    TYPICAL_LOAD,
    SimulatedEngine,
    offline_throughput,
    preset,
    run_load,
)


def _request(i: int = 0, *, max_tokens: int = 256, content: str | None = None,
             **extra: Any) -> GenerationRequest:
    text = content if content is not None else f"Question {i}: what is the capital of country number {i}?"
    messages = [{"role": "user", "content": text}]
    return GenerationRequest(f"req-{i}", messages, max_tokens=max_tokens, extra=extra)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_engine(engine: SimulatedEngine, fn: Any) -> Any:
    await engine.start()
    try:
        return await fn(engine)
    finally:
        await engine.shutdown()


# --- calibration: the figures of the decision record, measured on the real loop --------------------------

@pytest.mark.parametrize(("model", "tokens_per_s"), [("llama-3-70b", 12_000), ("mistral-7b", 25_000)])
def test_saturation_throughput_matches_the_decision_record(model: str, tokens_per_s: int) -> None:
    engine = SimulatedEngine(model, time_scale=0, die_after=0)
    report = _run(_with_engine(engine, lambda e: run_load(e, SATURATION_LOAD)))
    assert report.requests == SATURATION_LOAD.n_requests
    assert report.tokens_per_s == pytest.approx(tokens_per_s, rel=0.03)
    # The pure planning function agrees with the loop it models.
    prompt_tokens = 3 + 4 + int(SATURATION_LOAD.prompt_chars / 3.6) + 1
    planned = offline_throughput(PRESETS[model], SATURATION_LOAD.n_requests, prompt_tokens, 1024)
    assert planned == pytest.approx(report.tokens_per_s, rel=0.02)


@pytest.mark.parametrize(("model", "p95_ms"), [("llama-3-70b", 650), ("mistral-7b", 180)])
def test_p95_under_typical_load_matches_the_decision_record(model: str, p95_ms: int) -> None:
    engine = SimulatedEngine(model, time_scale=0, die_after=0)
    report = _run(_with_engine(engine, lambda e: run_load(e, TYPICAL_LOAD)))
    assert report.requests == TYPICAL_LOAD.n_requests
    assert report.p95_s * 1000 == pytest.approx(p95_ms, rel=0.05)
    assert report.p50_s < report.p95_s


def test_latency_grows_with_load_like_a_real_engine() -> None:
    async def p95(concurrency: int) -> float:
        engine = SimulatedEngine("llama-3-70b", time_scale=0, die_after=0)
        spec = replace(TYPICAL_LOAD, n_requests=400, concurrency=concurrency)
        return (await _with_engine(engine, lambda e: run_load(e, spec))).p95_s

    light, heavy = _run(p95(4)), _run(p95(128))
    assert heavy > 1.5 * light


# --- the latency model --------------------------------------------------------------------------------

def test_single_request_timings_follow_the_step_model() -> None:
    profile = PRESETS["mistral-7b"]
    engine = SimulatedEngine(profile, time_scale=0, die_after=0)
    request = _request(1, simulated_output_tokens=10)
    result: GenerationResult = _run(_with_engine(engine, lambda e: e.generate(request)))
    prompt = estimate_messages_tokens(request.messages)
    prefill = profile.step_s(1, prompt)
    assert result.completion_tokens == 10
    assert result.prompt_tokens == prompt
    assert result.time_to_first_token_s == pytest.approx(prefill)
    assert result.inference_s == pytest.approx(prefill + 9 * profile.step_s(1))
    assert result.engine_queue_s == pytest.approx(0.0, abs=1e-9)


def test_time_scale_speeds_up_the_wall_clock_but_reports_modelled_timings() -> None:
    request = _request(2, simulated_output_tokens=100)

    async def timed(scale: float) -> tuple[GenerationResult, float]:
        engine = SimulatedEngine("mistral-7b", time_scale=scale, die_after=0)
        t0 = time.perf_counter()
        result = await _with_engine(engine, lambda e: e.generate(request))
        return result, time.perf_counter() - t0

    fast, fast_wall = _run(timed(0.01))
    real, real_wall = _run(timed(1.0))
    assert fast.inference_s == pytest.approx(real.inference_s, rel=0.01)
    assert real.inference_s > 0.55  # 100 tokens at ~6 ms a step
    assert real_wall >= real.inference_s * 0.95  # time_scale=1 really takes the modelled time
    assert fast_wall < real_wall / 5
    assert fast.extra["timing"] == "modelled"


def test_requests_beyond_max_num_seqs_wait_in_the_engine_queue_fcfs() -> None:
    profile = preset("llama-3-70b", max_num_seqs=4)

    async def scenario(engine: SimulatedEngine) -> list[GenerationResult]:
        return await asyncio.gather(*(engine.generate(_request(i, simulated_output_tokens=20))
                                      for i in range(10)))

    results = _run(_with_engine(SimulatedEngine(profile, time_scale=0, die_after=0), scenario))
    queued = [r.engine_queue_s for r in results]
    assert all(q == pytest.approx(0.0, abs=1e-9) for q in queued[:4])
    assert all(q > 0.2 for q in queued[4:])  # waited for a whole batch of 20 tokens to finish
    assert queued[4:8] == sorted(queued[4:8]) and queued[8] > queued[7]  # first come, first served


def test_cancelled_request_frees_its_slot() -> None:
    profile = preset("mistral-7b", max_num_seqs=1)

    async def scenario(engine: SimulatedEngine) -> GenerationResult:
        # Alone, the hog would hold the only slot for ~1.9 s of wall time (32,000 steps at time_scale 0.01).
        hog_request = _request(1, simulated_output_tokens=100_000, max_tokens=32_000)
        hog = asyncio.ensure_future(engine.generate(hog_request))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(engine.generate(_request(2, simulated_output_tokens=5)))
        await asyncio.sleep(0.05)
        hog.cancel()
        return await asyncio.wait_for(waiting, 1.0)

    result = _run(_with_engine(SimulatedEngine(profile, time_scale=0.01, die_after=0), scenario))
    assert result.completion_tokens == 5


# --- outputs ------------------------------------------------------------------------------------------

def test_output_is_marked_simulated_deterministic_and_sized_by_tokens() -> None:
    async def twice(engine: SimulatedEngine) -> tuple[GenerationResult, GenerationResult, GenerationResult]:
        return await asyncio.gather(engine.generate(_request(7)), engine.generate(_request(7)),
                                    engine.generate(_request(8)))

    a, b, c = _run(_with_engine(SimulatedEngine("llama-3-70b", time_scale=0, die_after=0), twice))
    assert a.text.startswith("[simulated llama-3-70b output] ")
    assert a.simulated and a.model == "llama-3-70b" and a.finish_reason == "stop"
    assert (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
    assert len(a.text.split()) - 3 == a.completion_tokens  # marker is 3 words; one word per token
    assert 8 <= a.completion_tokens <= 32 and 8 <= c.completion_tokens <= 32
    lengths = {r.completion_tokens for r in _run(_with_engine(
        SimulatedEngine("llama-3-70b", time_scale=0, die_after=0),
        lambda e: asyncio.gather(*(e.generate(_request(i)) for i in range(50))),
    ))}
    assert len(lengths) > 10  # lengths vary with the prompt


def test_max_tokens_caps_the_output_with_finish_reason_length() -> None:
    engine = SimulatedEngine("mistral-7b", time_scale=0, die_after=0)
    request = _request(3, max_tokens=2, simulated_output_tokens=50)
    result = _run(_with_engine(engine, lambda e: e.generate(request)))
    assert (result.completion_tokens, result.finish_reason) == (2, "length")
    assert len(result.text.split()) - 3 == 2


def test_prompt_plus_max_tokens_beyond_the_context_is_refused() -> None:
    engine = SimulatedEngine(preset("llama-3-70b", max_model_len=1000), time_scale=0, die_after=0)
    long_prompt = "word " * 800  # ~1,100 estimated tokens

    with pytest.raises(ContextLengthExceeded, match="1000"):
        _run(_with_engine(engine, lambda e: e.generate(_request(4, content=long_prompt, max_tokens=10))))
    engine = SimulatedEngine(preset("llama-3-70b", max_model_len=1000), time_scale=0, die_after=0)
    with pytest.raises(ContextLengthExceeded):
        _run(_with_engine(engine, lambda e: e.generate(_request(5, max_tokens=990))))
    engine = SimulatedEngine("llama-3-70b", time_scale=0, die_after=0)
    with pytest.raises(EngineRequestError):
        _run(_with_engine(engine, lambda e: e.generate(_request(6, max_tokens=0))))


# --- faults -------------------------------------------------------------------------------------------

def test_kill_fails_in_flight_and_future_requests_with_engine_dead() -> None:
    async def scenario(engine: SimulatedEngine) -> list[Any]:
        pending = [asyncio.ensure_future(engine.generate(_request(i, simulated_output_tokens=500)))
                   for i in range(5)]
        await asyncio.sleep(0.02)
        engine.kill("CUDA out of memory (test)")
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        try:
            await engine.generate(_request(99))
        except EngineDeadError as exc:
            outcomes.append(exc)
        return outcomes

    engine = SimulatedEngine("llama-3-70b", time_scale=0.01, die_after=0)
    outcomes = _run(_with_engine(engine, scenario))
    assert len(outcomes) == 6
    assert all(isinstance(o, EngineDeadError) and "CUDA out of memory" in str(o) for o in outcomes)
    assert engine.dead_reason == "CUDA out of memory (test)"


def test_die_after_kills_the_engine_after_n_requests() -> None:
    engine = SimulatedEngine("mistral-7b", time_scale=0, die_after=3)

    async def scenario(e: SimulatedEngine) -> list[Any]:
        outcomes: list[Any] = []
        for i in range(5):
            try:
                outcomes.append(await e.generate(_request(i)))
            except EngineDeadError as exc:
                outcomes.append(exc)
        return outcomes

    outcomes = _run(_with_engine(engine, scenario))
    assert [isinstance(o, GenerationResult) for o in outcomes] == [True, True, True, False, False]
    assert "after 3 requests" in (engine.dead_reason or "")


def test_shutdown_fails_pending_requests_and_refuses_new_ones() -> None:
    async def scenario() -> tuple[Any, Any]:
        engine = SimulatedEngine("llama-3-70b", time_scale=0.01, die_after=0)
        await engine.start()
        pending = asyncio.ensure_future(engine.generate(_request(1, simulated_output_tokens=1000)))
        await asyncio.sleep(0.02)
        await engine.shutdown()
        first = (await asyncio.gather(pending, return_exceptions=True))[0]
        try:
            await engine.generate(_request(2))
        except EngineDeadError as exc:
            return first, exc
        return first, None

    first, later = _run(scenario())
    assert isinstance(first, EngineDeadError) and isinstance(later, EngineDeadError)


# --- configuration ------------------------------------------------------------------------------------

def test_presets_and_configuration_errors() -> None:
    engine = SimulatedEngine("mistral-7b", time_scale=0)
    assert isinstance(engine, Backend) and engine.simulated and engine.kind == "simulated"
    assert preset("llama-3-70b", max_num_seqs=8).max_num_seqs == 8
    with pytest.raises(ConfigError, match="gpt-4-turbo"):
        preset("gpt-4-turbo")
    with pytest.raises(ConfigError):
        SimulatedEngine("mistral-7b", time_scale=-1)


def test_the_engine_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker hands it Settings' values (tests/unit/test_settings.py): the variables alone change nothing,
    # and a bad value is Settings.from_env's error at start-up, not the engine's.
    monkeypatch.setenv("SWITCHYARD_SIM_TIME_SCALE", "0.5")
    monkeypatch.setenv("SWITCHYARD_SIM_DIE_AFTER", "3")
    engine = SimulatedEngine("mistral-7b")
    assert (engine.time_scale, engine.die_after) == (1.0, None)
    monkeypatch.setenv("SWITCHYARD_SIM_DIE_AFTER", "soon")
    assert SimulatedEngine("mistral-7b").die_after is None
