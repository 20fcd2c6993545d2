"""The simulated engine's batching policy (vLLM-like continuous batching), free of asyncio and clocks so that
the engine and capacity planning (:func:`offline_throughput`) share it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from dataclasses import dataclass

from workers.engines.base import GenerationResult
from workers.engines.simulated_profiles import SimulatedEngineProfile


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

