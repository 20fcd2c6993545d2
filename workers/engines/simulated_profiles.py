"""The simulated engine's cost model: one profile per model, and the calibrated presets.

A step of the modelled engine lasts ``base_step_s + per_seq_step_s * n_running + prefill_s_per_token *
prompt_tokens_admitted_this_step``; :mod:`workers.engines.simulated` describes the model and its calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from switchyard.errors import ConfigError

#: ``request.extra`` key that forces a request's output length instead of the profile's hashed range.
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


#: Calibrated presets; see :mod:`workers.engines.simulated`'s docstring for the workloads behind the figures.
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

