"""SimulatedEngine: a continuous-batching model of a vLLM engine, for the demo, tests and capacity planning.

It runs a real scheduler loop on asyncio, shaped like vLLM's: one background task admits waiting requests
(first come, first served) up to ``max_num_seqs``, runs their prefill inside the next step (as vLLM's chunked
prefill does; the prefill yields each new sequence's first token), then decode steps that give one token to
every running sequence. A step lasts::

    step_s = base_step_s + per_seq_step_s * n_running + prefill_s_per_token * prompt_tokens_admitted_this_step

Output lengths are deterministic: a hash of the messages picks a length in
[output_tokens_min, output_tokens_max]; ``request.extra["simulated_output_tokens"]`` forces one (benchmarks).
A request ends at min(max_tokens, target) tokens, with finish_reason "length" when max_tokens cut it short.
Prompt tokens are :func:`switchyard.tokens.estimate_messages_tokens`. prompt + max_tokens above
``max_model_len`` raises :class:`ContextLengthExceeded` before the request is queued (vLLM's OpenAI server
answers 400 there, and :mod:`workers.engines.vllm_local` raises the same), so a job fails alike on the
simulator and on a GPU. max_tokens < 1 raises :class:`EngineRequestError`.

Time. The engine keeps a *modelled clock*: each step advances it by exactly its modelled ``step_s``; while the
engine is idle it follows the wall clock divided by ``time_scale``. The loop sleeps ``step_s * time_scale``
only to pace the wall clock. Every timing in a result (engine_queue_s, time_to_first_token_s, inference_s) is
read on the modelled clock, i.e. **unscaled**: a demo at time_scale=0.01 reports the latencies a real-time run
would, and host jitter (timer overshoot, a busy CPU) never leaks into them. time_scale=1 is real time;
time_scale=0 runs as fast as the CPU allows. ``result.extra["timing"] == "modelled"`` says so.

Calibration (the decision record; ``python -m workers.engines.simulated`` measures it on the real loop):

- **Saturation throughput** -- :data:`SATURATION_LOAD`: 1,024 requests queued at once, ~108-token prompts,
  1,024 output tokens each; aggregate output tokens per modelled second. llama-3-70b ~12,000 tok/s,
  mistral-7b ~25,000 tok/s (decode-bound: steady state is max_num_seqs / step_s(max_num_seqs), less the
  prefill share; :func:`offline_throughput` computes it without the loop).
- **P95 end-to-end latency under typical load** -- :data:`TYPICAL_LOAD`: a closed loop of 16 jobs in flight
  (each finished job is replaced at once), ~108-token prompts, output lengths from the profile's hashed range
  (llama-3-70b 8-32 tokens, mistral-7b 4-20: short extraction/classification answers), 2,000 jobs.
  P95 of inference_s (queue in the engine + prefill + decode): llama-3-70b ~650 ms, mistral-7b ~180 ms.
  More jobs in flight, longer prompts or longer outputs give higher latencies, as on a real engine.

Fault injection: :meth:`SimulatedEngine.kill` makes every in-flight and future ``generate`` raise
:class:`EngineDeadError` (vLLM after a CUDA OOM). ``die_after=N`` kills the engine right after its N-th
completed request; 0 or None never. The engine reads no environment: a worker passes the values of
``SWITCHYARD_SIM_TIME_SCALE`` and ``SWITCHYARD_SIM_DIE_AFTER``, which :class:`switchyard.settings.Settings`
reads and validates at start-up (:func:`workers.worker.build_backend`).

Layout: the cost model and presets are in :mod:`workers.engines.simulated_profiles`, the batching policy in
:mod:`workers.engines.simulated_scheduler`, the calibration workloads in :mod:`workers.engines.simulated_load`;
this module holds the asyncio engine and re-exports their public names.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from switchyard.errors import ConfigError, ContextLengthExceeded, EngineDeadError, EngineRequestError
from switchyard.tokens import estimate_messages_tokens
from workers.engines.base import GenerationRequest, GenerationResult
from workers.engines.simulated_load import (
    SATURATION_LOAD,
    TYPICAL_LOAD,
    LoadReport,
    LoadSpec,
    percentile,
    run_load,
)
from workers.engines.simulated_profiles import OUTPUT_TOKENS_KEY, PRESETS, SimulatedEngineProfile, preset
from workers.engines.simulated_scheduler import _Scheduler, _Seq, offline_throughput

# The cost model, scheduler and load measurements live in simulated_profiles, simulated_scheduler and
# simulated_load; their public names are re-exported here, where callers and tests import them from.
__all__ = [
    "OUTPUT_TOKENS_KEY", "PRESETS", "SATURATION_LOAD", "TYPICAL_LOAD",
    "LoadReport", "LoadSpec", "SimulatedEngine", "SimulatedEngineProfile", "offline_throughput", "percentile",
    "preset", "run_load", "simulated_text",
]

logger = logging.getLogger(__name__)


_WORDS = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim",
)


def _digest(messages: list[dict[str, Any]]) -> int:
    # blake2b, not hash(): str hashes are salted per process, and lengths must agree across workers.
    raw = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def simulated_text(model: str, digest: int, n_tokens: int) -> str:
    """A marker plus one filler word per modelled token (the marker itself is not counted)."""
    words = " ".join(_WORDS[(digest + 7 * i) % len(_WORDS)] for i in range(n_tokens))
    return f"[simulated {model} output] {words}"


class SimulatedEngine:
    """A :class:`~workers.engines.base.Backend` that models a warm vLLM engine; never produces real text."""

    kind = "simulated"
    simulated = True

    def __init__(
        self,
        profile: SimulatedEngineProfile | str,
        *,
        time_scale: float | None = None,
        die_after: int | None = None,
    ) -> None:
        self.profile = preset(profile) if isinstance(profile, str) else profile
        self.time_scale = 1.0 if time_scale is None else float(time_scale)
        if self.time_scale < 0:
            raise ConfigError(f"time_scale must not be negative (got {self.time_scale})")
        self.die_after = die_after
        self.load_s = 0.0
        self._sched = _Scheduler(self.profile)
        self._live: set[_Seq] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._vclock = 0.0
        self._idle_w0 = time.monotonic()
        self._step: tuple[float, float, float] | None = None  # (modelled start, wall start, step_s)
        self._completed = 0
        self._dead_reason: str | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle_w0 = time.monotonic()
        self._task = self._loop.create_task(self._run(), name=f"simulated-engine-{self.profile.model}")
        logger.info("simulated engine %s ready (time_scale=%s, die_after=%s)",
                    self.profile.model, self.time_scale, self.die_after)

    async def shutdown(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_all("simulated engine shut down")

    @property
    def dead_reason(self) -> str | None:
        return self._dead_reason

    def kill(self, reason: str = "simulated CUDA out of memory") -> None:
        """Make the engine unusable, like vLLM after a CUDA OOM. Safe to call from any thread."""
        if self._dead_reason is None:
            self._dead_reason = reason
            logger.error("simulated engine %s died: %s", self.profile.model, reason)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._die()
        else:
            loop.call_soon_threadsafe(self._die)

    def modelled_now(self) -> float:
        """The engine's modelled clock, in seconds (see the module docstring)."""
        if self._step is not None:
            v0, w0, dur = self._step
            if self.time_scale <= 0:
                return v0
            return v0 + min(max((time.monotonic() - w0) / self.time_scale, 0.0), dur)
        if self.time_scale <= 0 or self._task is None:
            return self._vclock
        return self._vclock + (time.monotonic() - self._idle_w0) / self.time_scale

    # --- requests -------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self._check_usable()
        if self._task is None:
            await self.start()
        assert self._loop is not None and self._wake is not None
        prompt_tokens = estimate_messages_tokens(request.messages)
        if request.max_tokens < 1:
            raise EngineRequestError(f"max_tokens must be at least 1 (got {request.max_tokens})")
        limit = self.profile.max_model_len
        if prompt_tokens + request.max_tokens > limit:
            raise ContextLengthExceeded(
                f"{self.profile.model}: prompt ({prompt_tokens} tokens, estimated) + max_tokens "
                f"({request.max_tokens}) exceeds the context of {limit} tokens"
            )
        digest = _digest(request.messages)
        target = self._target_tokens(request, digest)
        seq = _Seq(
            prompt_tokens=prompt_tokens,
            target=min(target, request.max_tokens),
            arrival_v=self.modelled_now(),
            digest=digest,
            finish_reason="length" if target > request.max_tokens else "stop",
            future=self._loop.create_future(),
        )
        self._live.add(seq)
        self._sched.waiting.append(seq)
        self._wake.set()
        try:
            return await seq.future
        except asyncio.CancelledError:
            self._sched.abort(seq)
            self._live.discard(seq)
            raise

    def _target_tokens(self, request: GenerationRequest, digest: int) -> int:
        forced = request.extra.get(OUTPUT_TOKENS_KEY)
        if forced is not None:
            if isinstance(forced, bool) or not isinstance(forced, int) or forced < 1:
                raise EngineRequestError(f"extra[{OUTPUT_TOKENS_KEY!r}] must be a positive integer")
            return forced
        lo, hi = self.profile.output_tokens_min, self.profile.output_tokens_max
        return max(1, lo + digest % (hi - lo + 1))

    def _check_usable(self) -> None:
        if self._dead_reason is not None:
            raise EngineDeadError(f"{self.profile.model} engine is dead: {self._dead_reason}")
        if self._closed:
            raise EngineDeadError(f"{self.profile.model} engine is shut down")

    # --- the scheduler loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        sched = self._sched
        try:
            while True:
                if not sched.busy():
                    self._idle_w0 = time.monotonic()
                    self._wake.clear()
                    await self._wake.wait()
                    self._vclock = self.modelled_now()  # idle time counts, scaled
                    continue
                admitted, step_s = sched.plan()
                if step_s <= 0:
                    continue  # only aborted requests were waiting
                v0 = self._vclock
                self._step = (v0, time.monotonic(), step_s)
                await asyncio.sleep(step_s * self.time_scale)
                self._vclock, self._step = v0 + step_s, None
                for seq in sched.commit(admitted, v0, self._vclock):
                    self._finish(seq)
                    if self._dead_reason is not None:
                        return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave callers waiting forever
            logger.exception("simulated engine %s: scheduler loop failed", self.profile.model)
            self.kill("simulated engine scheduler crashed")

    def _finish(self, seq: _Seq) -> None:
        self._live.discard(seq)
        if seq.future is not None and not seq.future.done():
            seq.future.set_result(GenerationResult(
                text=simulated_text(self.profile.model, seq.digest, seq.target),
                finish_reason=seq.finish_reason,
                prompt_tokens=seq.prompt_tokens,
                completion_tokens=seq.target,
                model=self.profile.model,
                inference_s=self._vclock - seq.arrival_v,
                time_to_first_token_s=seq.first_token_v - seq.arrival_v,
                engine_queue_s=seq.admitted_v - seq.arrival_v,
                simulated=True,
                extra={"timing": "modelled", "time_scale": self.time_scale},
            ))
        self._completed += 1
        if self.die_after and self._completed >= self.die_after:
            self.kill(f"simulated engine death after {self._completed} requests "
                      f"(die_after={self.die_after}; SWITCHYARD_SIM_DIE_AFTER in a worker)")

    def _die(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._fail_all(f"{self.profile.model} engine is dead: {self._dead_reason}")

    def _fail_all(self, message: str) -> None:
        live, self._live = self._live, set()
        for seq in live:
            self._sched.abort(seq)
            if seq.future is not None and not seq.future.done():
                seq.future.set_exception(EngineDeadError(message))


# --- measuring the loop (the calibration figures; the workloads are in simulated_load) -------------------


async def _calibrate(time_scale: float) -> None:
    for name in PRESETS:
        for label, spec in (("saturation", SATURATION_LOAD), ("typical", TYPICAL_LOAD)):
            engine = SimulatedEngine(name, time_scale=time_scale, die_after=0)
            report = await run_load(engine, spec)
            await engine.shutdown()
            print(f"{name:12} {label:10} {report.tokens_per_s:9,.0f} tok/s"
                  f"  P50 {report.p50_s * 1000:8.1f} ms  P95 {report.p95_s * 1000:8.1f} ms"
                  f"  ({report.requests} jobs, {report.wall_s:.1f} s wall)")


if __name__ == "__main__":
    import sys

    asyncio.run(_calibrate(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0))
