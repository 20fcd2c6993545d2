"""``switchyard worker gpt-4-turbo|claude-3-opus --engine simulated``: the real API-worker path, answered locally.

The backend starts a local server speaking the provider's wire protocol (:mod:`switchyard.localapi`, the one the
demo uses) and drives the provider's ordinary backend (:class:`OpenAIBackend` / :class:`AnthropicBackend`, the
official SDK) against it. Everything else is the API worker's: the executor, the global rate limiter, the
circuit breaker, budgets, the ledger. Every result is marked simulated, as the demo's are: the server says so in
a header on every response, and this backend also sets the flag itself, because output it knows to be simulated
must never be recorded as real whatever a header says.

Nothing is sent to the real provider in this mode: the SDK client gets the local server's URL and a key of its
own explicitly, so ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (and Anthropic's) are neither read nor used.

Why the server runs inside the worker process (threads), not as a child process like the demo's: it then dies
with the worker however the worker ends (SIGTERM, SIGKILL, the OOM killer), so it can never be orphaned and no
supervisor has to know about it. The demo starts its servers as separate processes because it measures the
system under load; a worker draining a queue without keys does not need that isolation, and the server's
handlers spend their time in ``sleep`` (the simulated delay), which releases the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from switchyard.catalog import ModelSpec
from switchyard.localapi import SimulatedAPIServer, anthropic_server, openai_server
from workers.engines.base import Backend, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

#: Seconds the local server holds every response, per provider: the demo's figures, so that a simulated
#: worker paces like the demo's API workers (switchyard.demo uses these too).
SIMULATED_DELAY_S = {"openai": 0.15, "anthropic": 0.25}


class SimulatedProviderBackend:
    """A commercial model's backend against a local simulated provider started (and stopped) with it."""

    simulated = True  # known before the first result: the worker's start-up warning says so at once

    def __init__(self, spec: ModelSpec, *, delay_s: float | None = None) -> None:
        if spec.self_hosted:
            raise ValueError(f"{spec.provider_model}: a simulated provider API is for commercial models")
        self.spec = spec
        # The ledger's backend column reads as the demo's API workers' ("openai" / "anthropic"); the
        # simulated column is what tells the two apart.
        self.kind = spec.provider
        self.delay_s = SIMULATED_DELAY_S.get(spec.provider, 0.0) if delay_s is None else delay_s
        self.server: SimulatedAPIServer | None = None
        self._inner: Backend | None = None

    def _make_server(self, key: str) -> SimulatedAPIServer:
        make = openai_server if self.spec.provider == "openai" else anthropic_server
        # The catalog's limits, as the demo's servers enforce them: the worker's global limiter is then
        # exercised against a server that answers 429 past them, like the real API would.
        limits = {"rpm": self.spec.rpm, "tpm": self.spec.tpm} if self.spec.rpm and self.spec.tpm else {}
        return make(host="127.0.0.1", port=0, api_key=key, delay_s=self.delay_s,
                    models=[self.spec.provider_model], **limits)

    def _make_inner(self, base_url: str, key: str) -> Backend:
        # base_url and api_key are explicit: the SDKs then ignore OPENAI_BASE_URL / ANTHROPIC_BASE_URL and keys.
        if self.spec.provider == "openai":
            from workers.providers.openai_api import OpenAIBackend

            return OpenAIBackend(self.spec.provider_model, api_key=key, base_url=base_url,
                                 timeout_s=self.spec.timeout_s)
        from workers.providers.anthropic_api import AnthropicBackend

        return AnthropicBackend(self.spec.provider_model, api_key=key, base_url=base_url,
                                timeout_s=self.spec.timeout_s)

    async def start(self) -> None:
        # A key of this process's own: only this worker's SDK client is answered by its server.
        key = f"sk-local-simulated-{secrets.token_hex(8)}"
        server = self.server = self._make_server(key).start()
        try:
            inner = self._make_inner(server.base_url, key)
            await inner.start()
        except BaseException:
            server.stop()
            self.server = None
            raise
        self._inner = inner
        log.warning("SIMULATED %s API for %s on %s (nothing is sent to %s)", self.spec.provider,
                    self.spec.provider_model, server.base_url, self.spec.provider)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._inner is None:
            raise RuntimeError("SimulatedProviderBackend.generate() called before start()")
        result = await self._inner.generate(request)
        result.simulated = True  # see the module docstring: not left to a response header
        return result

    async def shutdown(self) -> None:
        try:
            if self._inner is not None:
                await self._inner.shutdown()
                self._inner = None
        finally:
            if self.server is not None:
                server, self.server = self.server, None
                # stop() joins the serving thread (one poll interval): off the event loop.
                await asyncio.to_thread(server.stop)
