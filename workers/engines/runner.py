"""BackendRunner: the bridge between Celery's task threads and an asyncio backend.

A worker process holds one warm backend (a vLLM engine, the simulator, an API client). Backends are
asynchronous -- many ``generate`` calls in flight on one event loop is what lets vLLM batch continuously --
while Celery's threads pool runs each job in its own thread. The runner owns a daemon thread with its own
event loop; task threads hand requests over with :meth:`BackendRunner.submit` (thread-safe) and get a
``concurrent.futures.Future`` back. Task threads never touch the loop.

Once the backend raises :class:`EngineDeadError` the runner is unhealthy for good: ``dead_reason`` says why,
and every later submission fails at once with EngineDeadError, so the worker hands its jobs back to the queue
and exits instead of failing them one by one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from typing import Any

from switchyard.errors import EngineDeadError, EngineOverloadedError
from workers.engines.base import Backend, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)


class BackendRunner:
    """Runs ``backend`` on a private event loop thread; see the module docstring."""

    def __init__(self, backend: Backend, *, name: str | None = None) -> None:
        self.backend = backend
        self.name = name or f"backend-{backend.kind}"
        self._lock = threading.Lock()  # guards the lifecycle fields below against concurrent submit/stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # touched only on the loop thread
        self._state = "new"  # new -> starting -> running -> stopping -> stopped
        self._dead_reason: str | None = None
        self.load_s: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> float:
        """Start the loop thread and the backend; returns the backend's load time in seconds.

        Raises whatever ``backend.start()`` raised (e.g. ConfigError), or EngineDeadError when it did not
        finish within ``timeout``; the thread is stopped in both cases.
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"{self.name}: start() called in state {self._state}")
            self._state = "starting"
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=self._run_loop, args=(loop,), name=self.name, daemon=True)
            self._thread.start()
        t0 = time.perf_counter()
        fut = asyncio.run_coroutine_threadsafe(self.backend.start(), loop)
        try:
            fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self._abandon_start()
            raise EngineDeadError(f"{self.name}: backend did not start within {timeout} s") from None
        except BaseException as exc:
            if isinstance(exc, EngineDeadError):
                self._dead_reason = str(exc)
            self._abandon_start()
            raise
        self.load_s = time.perf_counter() - t0
        with self._lock:
            if self._state == "starting":  # not if stop() came in meanwhile
                self._state = "running"
        logger.info("%s: backend %s started in %.1f s", self.name, self.backend.kind, self.load_s)
        return self.load_s

    def stop(self, timeout: float = 30.0) -> None:
        """Abort in-flight requests (their futures raise EngineDeadError, so the jobs are requeued), shut the
        backend down and join the thread. Idempotent."""
        with self._lock:
            if self._state in ("new", "stopped", "stopping"):
                self._state = "stopped" if self._state == "new" else self._state
                return
            self._state = "stopping"
            loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        deadline = time.monotonic() + timeout
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            logger.warning("%s: backend shutdown took longer than %.1f s; stopping the loop anyway",
                           self.name, timeout)
        except Exception:
            logger.exception("%s: backend shutdown failed", self.name)
        finally:
            _stop_loop(loop)
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
            with self._lock:
                self._state = "stopped"
        if thread.is_alive():
            logger.warning("%s: loop thread still alive after stop()", self.name)

    @property
    def healthy(self) -> bool:
        """Running, thread alive, and no EngineDeadError seen."""
        thread = self._thread
        return (self._state == "running" and self._dead_reason is None
                and thread is not None and thread.is_alive())

    @property
    def dead_reason(self) -> str | None:
        return self._dead_reason

    @property
    def in_flight(self) -> int:
        """Requests submitted and not finished (approximate when read from another thread)."""
        return len(self._tasks)

    # --- requests -------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> concurrent.futures.Future[GenerationResult]:
        """Hand ``request`` to the backend; callable from any thread. Cancelling the future aborts it."""
        with self._lock:
            refusal = self._refusal()
            if refusal is None:
                assert self._loop is not None
                try:
                    return asyncio.run_coroutine_threadsafe(self._generate(request), self._loop)
                except RuntimeError:  # loop closed under us
                    refusal = f"{self.name} is stopped"
        failed: concurrent.futures.Future[GenerationResult] = concurrent.futures.Future()
        failed.set_exception(EngineDeadError(refusal))
        return failed

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        """Blocking convenience: submit and wait.

        On timeout the request is cancelled (aborted in the engine) and EngineOverloadedError is raised:
        the engine did not get to it in time, so the job is worth retrying later.
        """
        fut = self.submit(request)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise EngineOverloadedError(
                f"{self.name}: no result for {request.request_id} within {timeout} s", retry_after=timeout
            ) from None

    # --- internals (loop thread) ----------------------------------------------------------------------

    def _refusal(self) -> str | None:
        if self._dead_reason is not None:
            return f"{self.name}: engine is dead: {self._dead_reason}"
        if self._state != "running":
            return f"{self.name} is not running (state {self._state})"
        return None

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await self.backend.generate(request)
        except asyncio.CancelledError:
            if self._state == "stopping":
                # The job is not at fault: EngineDeadError hands it back to the queue.
                raise EngineDeadError(f"{self.name} stopped before {request.request_id} finished") from None
            raise
        except EngineDeadError as exc:
            if self._dead_reason is None:
                self._dead_reason = str(exc) or type(exc).__name__
                logger.error("%s: engine dead: %s", self.name, self._dead_reason)
            raise
        finally:
            self._tasks.discard(task)

    async def _shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            logger.info("%s: cancelled %d in-flight request(s)", self.name, len(tasks))
        await self.backend.shutdown()

    def _abandon_start(self) -> None:
        """Release whatever a failed start left behind (a half-built engine's processes), best effort."""
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self.backend.shutdown(), loop).result(10.0)
            except Exception:  # the start error is the one worth raising
                logger.warning("%s: shutdown after a failed start failed too", self.name, exc_info=True)
            _stop_loop(loop)
        if thread is not None:
            thread.join(5.0)
        with self._lock:
            self._state = "stopped"

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            _cancel_leftovers(loop)
            loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(RuntimeError):  # already closed
        loop.call_soon_threadsafe(loop.stop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still scheduled (e.g. a backend's own tasks) so that closing the loop is quiet."""
    pending: list[asyncio.Task[Any]] = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
