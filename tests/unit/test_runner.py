"""BackendRunner: many task threads, one event loop thread, a dying engine, clean stops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest

from switchyard.errors import ConfigError, EngineDeadError, EngineOverloadedError
from workers.engines.base import GenerationRequest, GenerationResult
from workers.engines.runner import BackendRunner
from workers.engines.simulated import SimulatedEngine


def _request(i: int, tokens: int) -> GenerationRequest:
    messages = [{"role": "user", "content": f"job {i}"}]
    return GenerationRequest(f"job-{i}", messages, max_tokens=4096, extra={"simulated_output_tokens": tokens})


def _runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-runner")]


@pytest.fixture
def runner() -> Iterator[BackendRunner]:
    runner = BackendRunner(SimulatedEngine("mistral-7b", time_scale=0.2, die_after=0), name="test-runner")
    runner.start(timeout=10)
    yield runner
    runner.stop(timeout=10)


def test_start_reports_load_time_and_health(runner: BackendRunner) -> None:
    assert runner.load_s is not None and runner.load_s >= 0
    assert runner.healthy and runner.dead_reason is None


def test_200_requests_from_16_threads_complete_batched_and_keep_their_identity(runner: BackendRunner) -> None:
    # Request i asks for i+1 tokens, so every result can be traced back to its request.
    per_thread = [list(range(t, 200, 16)) for t in range(16)]
    results: dict[int, GenerationResult] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def task_thread(ids: list[int]) -> None:
        try:
            futures = {i: runner.submit(_request(i, (i % 20) + 1)) for i in ids}
            for i, fut in futures.items():
                res = fut.result(timeout=30)
                with lock:
                    results[i] = res
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=task_thread, args=(ids,)) for ids in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0

    assert not errors
    assert sorted(results) == list(range(200))
    assert all(results[i].completion_tokens == (i % 20) + 1 for i in range(200))
    # One at a time this would take ~200 x 10 steps x 6 ms x 0.2 = 2.4 s of wall time; batched, a fraction.
    assert wall < 1.5
    assert runner.in_flight == 0


def test_killed_engine_fails_pending_futures_and_marks_the_runner_unhealthy() -> None:
    engine = SimulatedEngine("llama-3-70b", time_scale=0.05, die_after=0)
    runner = BackendRunner(engine, name="test-runner-kill")
    runner.start(timeout=10)
    try:
        futures = [runner.submit(_request(i, 1000)) for i in range(20)]
        deadline = time.monotonic() + 5
        while runner.in_flight < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        engine.kill("CUDA out of memory (test)")  # from this (non-loop) thread
        for fut in futures:
            with pytest.raises(EngineDeadError, match="CUDA out of memory"):
                fut.result(timeout=5)
        assert not runner.healthy
        assert "CUDA out of memory" in (runner.dead_reason or "")
        later = runner.submit(_request(99, 1))
        with pytest.raises(EngineDeadError):
            later.result(timeout=0)  # refused at once, without reaching the engine
    finally:
        runner.stop(timeout=10)


def test_engine_dying_after_n_requests_under_16_task_threads() -> None:
    # die_after=40: what the worker-crash integration test sets through SWITCHYARD_SIM_DIE_AFTER.
    runner = BackendRunner(SimulatedEngine("llama-3-70b", time_scale=0.01, die_after=40), name="test-runner-die")
    runner.start(timeout=10)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda i: _outcome(runner, _request(i, 5 + i % 7)), range(200)))
    finally:
        runner.stop(timeout=10)
    assert outcomes.count("ok") == 40
    assert outcomes.count("dead") == 160
    assert "after 40 requests" in (runner.dead_reason or "")


def _outcome(runner: BackendRunner, request: GenerationRequest) -> str:
    try:
        runner.generate(request, timeout=30)
        return "ok"
    except EngineDeadError:
        return "dead"


def test_stop_requeues_in_flight_requests_and_leaves_no_thread_behind() -> None:
    engine = SimulatedEngine("llama-3-70b", time_scale=0.05, die_after=0)
    runner = BackendRunner(engine, name="test-runner-stop")
    runner.start(timeout=10)
    futures = [runner.submit(_request(i, 5000)) for i in range(5)]
    time.sleep(0.05)
    runner.stop(timeout=10)
    for fut in futures:
        with pytest.raises(EngineDeadError, match="stopped"):
            fut.result(timeout=1)
    assert not [t for t in threading.enumerate() if t.name == "test-runner-stop"]
    assert not runner.healthy
    with pytest.raises(EngineDeadError):
        runner.submit(_request(1, 1)).result(timeout=0)
    runner.stop()  # idempotent


def test_generate_timeout_aborts_the_request_and_is_retryable(runner: BackendRunner) -> None:
    with pytest.raises(EngineOverloadedError):
        runner.generate(_request(1, 100_000), timeout=0.2)
    deadline = time.monotonic() + 2
    while runner.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.in_flight == 0  # cancelled inside the engine, not left running
    assert runner.generate(_request(2, 3), timeout=5).completion_tokens == 3
    assert runner.healthy


class _FailingBackend:
    kind = "failing"
    simulated = True

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay, self.error, self.shut_down = delay, error, False

    async def start(self) -> None:
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        raise AssertionError("not started")

    async def shutdown(self) -> None:
        self.shut_down = True


def test_start_failure_propagates_and_cleans_up() -> None:
    backend = _FailingBackend(error=ConfigError("no model path"))
    runner = BackendRunner(backend, name="test-runner-fail")
    with pytest.raises(ConfigError, match="no model path"):
        runner.start(timeout=5)
    assert backend.shut_down
    assert not runner.healthy
    assert not [t for t in threading.enumerate() if t.name == "test-runner-fail"]


def test_start_timeout_is_engine_dead_and_cleans_up() -> None:
    runner = BackendRunner(_FailingBackend(delay=30), name="test-runner-slow")
    with pytest.raises(EngineDeadError, match="did not start"):
        runner.start(timeout=0.2)
    assert not [t for t in threading.enumerate() if t.name == "test-runner-slow"]


def test_submit_before_start_is_refused() -> None:
    runner = BackendRunner(SimulatedEngine("mistral-7b", time_scale=0, die_after=0))
    fut = runner.submit(_request(1, 1))
    assert isinstance(fut, concurrent.futures.Future)
    with pytest.raises(EngineDeadError, match="not running"):
        fut.result(timeout=0)


def test_no_runner_thread_outlives_the_tests() -> None:
    assert not _runner_threads()
