"""The routing policy: every rule and its reason, TOML overrides, overflow, and PII never leaving."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.router import Router, Signals
from schemas.jobs import MODEL_NAMES, parse_job
from switchyard.catalog import load_catalog
from tests.pii_strategies import texts_with_pii

CATALOG = load_catalog(None)
COMMERCIAL = set(CATALOG.commercial)


def job(prompt: str = "hello", model: str = "auto", **kw: object):  # type: ignore[no-untyped-def]
    return parse_job({"custom_id": "j", "prompt": prompt, "model": model, **kw})


def signals(complexity: float = 0.5, output: int = 300, pii: tuple[str, ...] = (), prompt: int = 50) -> Signals:
    return Signals(bool(pii), pii, complexity, output, prompt)


@pytest.mark.parametrize("s,model,rule,reason", [
    (signals(pii=("EMAIL",)), "llama-3-70b", "pii", "contains EMAIL: kept in-house on llama-3-70b"),
    (signals(complexity=0.9), "gpt-4-turbo", "complexity_high", "complexity 0.90 > 0.8"),
    (signals(output=3000), "claude-3-opus", "long_output", "expected output ~3000 tokens > 2000"),
    (signals(complexity=0.1), "mistral-7b", "complexity_low", "complexity 0.10 < 0.3"),
    (signals(), "llama-3-70b", "default", "default: llama-3-70b"),
    # Order of the decision record: PII first, then complexity > 0.8 before output length.
    (signals(complexity=0.95, output=5000, pii=("US_SSN",)), "llama-3-70b", "pii", "contains US_SSN"),
    (signals(complexity=0.95, output=5000), "gpt-4-turbo", "complexity_high", "complexity 0.95"),
    (signals(complexity=0.1, output=5000), "claude-3-opus", "long_output", "expected output"),
])
def test_each_rule_routes_and_explains(s: Signals, model: str, rule: str, reason: str) -> None:
    d = Router(CATALOG).decide(job(), s)
    assert (d.model, d.queue, d.rule) == (model, model, rule)
    assert reason in d.reason


def test_explicit_model_is_honoured_without_pii() -> None:
    d = Router(CATALOG).decide(job(model="claude-3-opus"), signals(complexity=0.1))
    assert (d.model, d.rule) == ("claude-3-opus", "explicit")


def test_explicit_commercial_model_is_refused_for_pii() -> None:
    d = Router(CATALOG).decide(job(model="gpt-4-turbo"), signals(pii=("PHONE",)))
    assert d.model == "llama-3-70b"
    assert "requested gpt-4-turbo refused" in d.reason


def test_explicit_self_hosted_model_is_honoured_with_pii() -> None:
    d = Router(CATALOG).decide(job(model="mistral-7b"), signals(pii=("PHONE",)))
    assert d.model == "mistral-7b"


def test_toml_thresholds_and_targets(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[routing]\ncomplexity_high = 0.95\ncomplexity_low = 0.5\nlong_output_tokens = 500\n'
                    'default_model = "mistral-7b"\n')
    router = Router(load_catalog(path))
    assert router.decide(job(), signals(complexity=0.9)).model == "mistral-7b"  # 0.9 is no longer "high"
    assert router.decide(job(), signals(complexity=0.4)).rule == "complexity_low"
    assert router.decide(job(), signals(complexity=0.6, output=800)).model == "claude-3-opus"


def test_overflow_moves_to_an_eligible_fallback_and_says_why() -> None:
    waits = {"mistral-7b": 300.0, "llama-3-70b": 2.0, "gpt-4-turbo": 0.0, "claude-3-opus": 0.0}
    d = Router(CATALOG, waits.get).decide(job(), signals(complexity=0.1))
    assert (d.model, d.rule) == ("llama-3-70b", "overflow")
    assert "mistral-7b queue wait ~300s > 30s: overflow to llama-3-70b" in d.reason


def test_overflow_never_sends_pii_to_a_commercial_model() -> None:
    waits = {"llama-3-70b": 10_000.0, "mistral-7b": 10_000.0, "gpt-4-turbo": 0.0, "claude-3-opus": 0.0}
    d = Router(CATALOG, waits.get).decide(job(), signals(pii=("EMAIL",)))
    assert d.model == "llama-3-70b"


def test_overflow_can_be_switched_off(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("[routing]\noverflow = false\n")
    waits = {"mistral-7b": 300.0, "llama-3-70b": 0.0}
    assert Router(load_catalog(path), waits.get).decide(job(), signals(complexity=0.1)).model == "mistral-7b"


def test_real_prompts_route_sensibly() -> None:
    router = Router(CATALOG)
    assert router.route(job("What is the capital of France?")).model == "mistral-7b"
    pii = router.route(job("Draft a letter to Maria Gonzalez at maria.gonzalez@example.com about her claim."))
    assert pii.model == "llama-3-70b" and "EMAIL" in pii.pii_types
    essay = router.route(job("Write a 4000-word report on the history of European canals."))
    assert essay.model == "claude-3-opus" and essay.expected_output_tokens > 2000
    # A name typed in lower case in a long-form ask: the essay rule would pick Claude; PII keeps it in-house.
    for asked in ("auto", "claude-3-opus"):
        bio = router.route(job("Write a 3000-word biography of maria gonzalez, my neighbour.", model=asked))
        assert bio.model == "llama-3-70b" and "PERSON" in bio.pii_types


thresholds = st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=texts_with_pii(), asked=st.sampled_from(("auto", *MODEL_NAMES)), bounds=thresholds,
       long_output=st.integers(1, 10_000), overflow_waits=st.booleans())
def test_no_job_with_pii_ever_reaches_a_commercial_model(sample: tuple[str, str], asked: str,
                                                        bounds: list[float], long_output: int,
                                                        overflow_waits: bool) -> None:
    text, _kind = sample
    low, high = bounds
    catalog = CATALOG.model_copy(update={"routing": CATALOG.routing.model_copy(update={
        "complexity_low": low, "complexity_high": high, "long_output_tokens": long_output})})
    # Every self-hosted queue hopelessly deep, every commercial queue empty: the strongest pull off-site.
    waits = {m: (1e9 if m not in COMMERCIAL else 0.0) for m in MODEL_NAMES} if overflow_waits else None
    decision = Router(catalog, waits.get if waits else None).route(job(text, model=asked))
    assert decision.contains_pii, f"PII not detected in {text!r}"
    assert decision.model not in COMMERCIAL
