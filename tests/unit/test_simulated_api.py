"""``--engine simulated`` for a commercial model: the SDK path against a local server the backend owns."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.errors import ConfigError
from switchyard.localapi import anthropic_server, openai_server
from switchyard.settings import Settings
from tests.netcheck import refuses_connections
from workers.engines.base import GenerationRequest
from workers.providers.simulated_api import SimulatedProviderBackend
from workers.worker import WorkerOptions, build_backend

PROVIDERS = [("gpt-4-turbo", "openai", openai_server), ("claude-3-opus", "anthropic", anthropic_server)]



@pytest.mark.parametrize(("model", "provider", "make_server"), PROVIDERS)
def test_answers_locally_marked_simulated_and_ignores_configured_provider(model: str, provider: str,
                                                                          make_server) -> None:  # type: ignore[no-untyped-def]
    with make_server() as decoy:  # stands for the real provider: configured by URL and key, must hear nothing
        prefix = provider.upper()
        settings = Settings.from_env({f"{prefix}_BASE_URL": decoy.base_url, f"{prefix}_API_KEY": "sk-real-key"})
        backend = build_backend(settings, WorkerOptions(model=model, engine="simulated"))
        assert isinstance(backend, SimulatedProviderBackend)
        assert backend.simulated is True and backend.kind == provider

        async def run() -> tuple[object, str]:
            await backend.start()
            assert backend.server is not None
            url = backend.server.base_url
            try:
                return await backend.generate(GenerationRequest(
                    request_id="r1", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16)), url
            finally:
                await backend.shutdown()

        result, url = asyncio.run(run())
        assert result.simulated is True  # type: ignore[attr-defined]
        assert result.text.startswith("[simulated")  # type: ignore[attr-defined]
        assert result.completion_tokens > 0  # type: ignore[attr-defined]
        assert decoy.requests() == [], "the configured provider URL was called"
        assert backend.server is None and refuses_connections(url), "the local server outlived the backend"


def test_self_hosted_and_commercial_engines_are_checked() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="cannot serve commercial gpt-4-turbo; use one of api, simulated"):
        build_backend(settings, WorkerOptions(model="gpt-4-turbo", engine="vllm"))
    with pytest.raises(ValueError, match="commercial"):
        SimulatedProviderBackend(settings.catalog.model("llama-3-70b"))
