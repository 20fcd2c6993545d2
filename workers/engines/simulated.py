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
:class:`EngineDeadError` (vLLM after a CUDA OOM). ``die_after=N`` (or the environment variable
``SWITCHYARD_SIM_DIE_AFTER=N``, read when the constructor gets die_after=None) kills the engine right after
its N-th completed request; 0 or unset never. ``SWITCHYARD_SIM_TIME_SCALE`` sets time_scale likewise.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from switchyard.errors import ConfigError, ContextLengthExceeded, EngineDeadError, EngineRequestError
from switchyard.tokens import estimate_messages_tokens
from workers.engines.base import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

DIE_AFTER_ENV = "SWITCHYARD_SIM_DIE_AFTER"
TIME_SCALE_ENV = "SWITCHYARD_SIM_TIME_SCALE"
OUTPUT_TOKENS_KEY = "simulated_output_tokens"


@dataclass(frozen=True, slots=True)
class SimulatedEngineProfile:
    """Cost model of one engine (one model on one host)."""

    model: str
    max_num_seqs: int  # continuous-batching cap; more requests wait in the engine's FCFS queue
    max_model_len: int  # prompt + max_tokens limit
    base_step_s: float  # decode step of a batch of one (weights read once per step: memory-bound)
    per_seq_step_s: float  # extra step time per running sequence
    prefill_s_per_token: float  # prompt processing, added to the step that admits the request
    output_tokens_min: int  # range of the hashed target lengths ("typical" outputs)
    output_tokens_max: int

    def step_s(self, n_running: int, prefill_tokens: int = 0) -> float:
        return self.base_step_s + self.per_seq_step_s * n_running + self.prefill_s_per_token * prefill_tokens

    def decode_tokens_per_s(self, n_running: int) -> float:
        """Steady-state decode throughput with ``n_running`` sequences (no prefill)."""
        return n_running / self.step_s(n_running)


#: Calibrated presets; see the module docstring for the workloads behind the figures.
PRESETS: dict[str, SimulatedEngineProfile] = {
    # Llama 3 70B, TP=8 on 8xA100: ~12 ms per decode step at batch 1 (140 GB of weights read from 8 HBM2e
    # stacks each step), ~10k prompt tokens/s of prefill (2 x 70 GFLOP a token at ~40% of 2.5 PFLOPS).
    "llama-3-70b": SimulatedEngineProfile(
        model="llama-3-70b", max_num_seqs=256, max_model_len=8192, base_step_s=0.0116,
        per_seq_step_s=0.0000273, prefill_s_per_token=0.0001, output_tokens_min=8, output_tokens_max=32,
    ),
    # Mistral 7B, TP=4 on 4xL40S: ~6 ms per decode step at batch 1, ~50k prompt tokens/s of prefill.
    "mistral-7b": SimulatedEngineProfile(
        model="mistral-7b", max_num_seqs=256, max_model_len=32768, base_step_s=0.006,
        per_seq_step_s=0.0000145, prefill_s_per_token=0.00002, output_tokens_min=4, output_tokens_max=20,
    ),
}


def preset(model: str, **overrides: Any) -> SimulatedEngineProfile:
    """The preset for ``model``, with fields replaced (e.g. max_num_seqs, max_model_len from the catalog)."""
    try:
        base = PRESETS[model]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"no simulated profile for {model!r}; known: {known}") from None
    return replace(base, **overrides) if overrides else base


@dataclass(eq=False, slots=True)
class _Seq:
    prompt_tokens: int
    target: int  # completion tokens this sequence will produce (>= 1)
    arrival_v: float = 0.0
    admitted_v: float = 0.0
    first_token_v: float = 0.0
    done_step: int = 0
    state: str = "waiting"  # waiting -> stepping -> running -> done | aborted
    digest: int = 0
    finish_reason: str = "stop"
    future: asyncio.Future[GenerationResult] | None = None


class _Scheduler:
    """The batching policy, free of asyncio and clocks so that the engine and capacity planning share it."""

    def __init__(self, profile: SimulatedEngineProfile) -> None:
        self.profile = profile
        self.waiting: deque[_Seq] = deque()
        self.n_running = 0
        self.step_no = 0
        self._running: list[tuple[int, int, _Seq]] = []  # heap by the step that completes the sequence
        self._tiebreak = itertools.count()

    def busy(self) -> bool:
        return bool(self.waiting) or self.n_running > 0

    def plan(self) -> tuple[list[_Seq], float]:
        """Admit waiting sequences up to the cap; the next step's sequences and its duration."""
        admitted: list[_Seq] = []
        while self.waiting and self.n_running + len(admitted) < self.profile.max_num_seqs:
            seq = self.waiting.popleft()
            if seq.state == "waiting":
                seq.state = "stepping"
                admitted.append(seq)
        n = self.n_running + len(admitted)
        if n == 0:
            return admitted, 0.0
        return admitted, self.profile.step_s(n, sum(s.prompt_tokens for s in admitted))

    def commit(self, admitted: list[_Seq], v_start: float, v_end: float) -> list[_Seq]:
        """Account one finished step; the sequences that completed in it."""
        self.step_no += 1
        for seq in admitted:
            if seq.state != "stepping":
                continue  # aborted during its prefill step
            seq.state, seq.admitted_v, seq.first_token_v = "running", v_start, v_end
            seq.done_step = self.step_no + seq.target - 1  # the prefill step produced the first token
            heapq.heappush(self._running, (seq.done_step, next(self._tiebreak), seq))
            self.n_running += 1
        done: list[_Seq] = []
        while self._running and self._running[0][0] <= self.step_no:
            seq = heapq.heappop(self._running)[2]
            if seq.state == "running":
                seq.state = "done"
                self.n_running -= 1
                done.append(seq)
        return done

    def abort(self, seq: _Seq) -> None:
        if seq.state == "running":
            self.n_running -= 1  # its heap entry is skipped when popped
        if seq.state in ("waiting", "stepping", "running"):
            seq.state = "aborted"


def offline_throughput(
    profile: SimulatedEngineProfile, n_requests: int, prompt_tokens: int, output_tokens: int
) -> float:
    """Output tokens per second for ``n_requests`` identical requests queued at once (pure, no sleeping)."""
    sched = _Scheduler(profile)
    sched.waiting.extend(_Seq(prompt_tokens, max(1, output_tokens)) for _ in range(n_requests))
    clock = 0.0
    while sched.busy():
        admitted, step_s = sched.plan()
        sched.commit(admitted, clock, clock + step_s)
        clock += step_s
    return n_requests * max(1, output_tokens) / clock if clock else 0.0


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


def _env_number(name: str, kind: type[int] | type[float]) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative (got {raw})")
    return value


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
        scale = time_scale if time_scale is not None else _env_number(TIME_SCALE_ENV, float)
        self.time_scale = 1.0 if scale is None else float(scale)
        if self.time_scale < 0:
            raise ConfigError(f"time_scale must not be negative (got {self.time_scale})")
        self.die_after = die_after if die_after is not None else _env_number(DIE_AFTER_ENV, int)
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
            self.kill(f"simulated engine death after {self._completed} requests ({DIE_AFTER_ENV})")

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


# --- measuring the loop (the calibration figures) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A closed-loop workload: ``concurrency`` clients send ``n_requests`` jobs back to back."""

    n_requests: int
    concurrency: int
    prompt_chars: int  # ~prompt_chars / 3.6 prompt tokens
    max_tokens: int
    output_tokens: int | None = None  # None: the profile's hashed lengths


TYPICAL_LOAD = LoadSpec(n_requests=2000, concurrency=16, prompt_chars=360, max_tokens=512)
SATURATION_LOAD = LoadSpec(n_requests=1024, concurrency=1024, prompt_chars=360, max_tokens=1024,
                           output_tokens=1024)


@dataclass(frozen=True, slots=True)
class LoadReport:
    requests: int
    completion_tokens: int
    modelled_s: float  # makespan on the modelled clock
    wall_s: float
    tokens_per_s: float  # completion tokens per modelled second
    p50_s: float  # end-to-end (inference_s) percentiles, modelled
    p95_s: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run_load(engine: SimulatedEngine, spec: LoadSpec) -> LoadReport:
    """Drive ``engine`` with ``spec`` on the running loop and measure it."""
    extra = {OUTPUT_TOKENS_KEY: spec.output_tokens} if spec.output_tokens else {}
    filler = "Summarise the following record and extract its fields. " * (spec.prompt_chars // 56 + 1)
    jobs = iter(range(spec.n_requests))
    results: list[GenerationResult] = []

    async def client() -> None:
        for i in jobs:  # shared iterator: a finished job is replaced at once (closed loop)
            content = f"Job {i}. {filler}"[: spec.prompt_chars]
            messages = [{"role": "user", "content": content}]
            request = GenerationRequest(f"load-{i}", messages, max_tokens=spec.max_tokens, extra=extra)
            results.append(await engine.generate(request))

    await engine.start()
    v0, w0 = engine.modelled_now(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(spec.concurrency)))
    modelled = engine.modelled_now() - v0
    tokens = sum(r.completion_tokens for r in results)
    latencies = [r.inference_s for r in results]
    rate = tokens / modelled if modelled else 0.0
    return LoadReport(len(results), tokens, modelled, time.perf_counter() - w0, rate,
                      percentile(latencies, 50), percentile(latencies, 95))


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
