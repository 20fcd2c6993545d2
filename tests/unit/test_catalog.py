"""The catalog: decision-record defaults, TOML overrides, clear refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from switchyard.catalog import load_catalog
from switchyard.errors import ConfigError


def test_defaults_are_the_decision_record() -> None:
    c = load_catalog(None)
    assert c.self_hosted == ["llama-3-70b", "mistral-7b"]
    assert c.commercial == ["gpt-4-turbo", "claude-3-opus"]
    assert (c.routing.complexity_high, c.routing.complexity_low, c.routing.long_output_tokens) == (0.8, 0.3, 2000)
    assert c.model("llama-3-70b").monthly_usd == Decimal(75000)
    assert c.model("llama-3-70b").host_class == "8xA100"
    assert c.model("mistral-7b").host_class == "4xL40S"
    assert c.model("gpt-4-turbo").rpm == 600 and c.model("gpt-4-turbo").tpm == 150000


def test_toml_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[routing]\ncomplexity_high = 0.9\n\n[models."gpt-4-turbo"]\nrpm = 100\n'
                    'input_usd_per_mtok = 5.0\n')
    c = load_catalog(path)
    assert c.routing.complexity_high == 0.9 and c.routing.complexity_low == 0.3
    assert c.model("gpt-4-turbo").rpm == 100 and c.model("gpt-4-turbo").tpm == 150000
    assert c.model("gpt-4-turbo").input_usd_per_mtok == Decimal("5.0")


@pytest.mark.parametrize("text,needle", [
    ('[routing]\ncomplexity_hi = 0.9\n', "routing.complexity_hi: unknown key"),
    ('[routing]\n\ncomplexity_high = "high"\n', ":3: routing.complexity_high"),
    ('[models."gpt-4-turbo"]\nrpm = -1\n', ":2: models.gpt-4-turbo.rpm"),
    ('[routing]\npii_model = "gpt-4-turbo"\n', "PII must stay self-hosted"),
    ("[routing\n", "not valid TOML"),
])
def test_bad_toml_is_refused_with_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert needle in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "nope.toml")
