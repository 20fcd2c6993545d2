"""Self-hosted models served by ``vllm serve`` on other hosts, through its OpenAI-compatible endpoint.

The call and the response reading are the OpenAI adapter's
(:func:`workers.providers.openai_api.chat_completion`); this module adds one client per host and round-robin
between them. A failed host is not skipped here: the error is retryable and the retry lands on the next host.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import openai

from switchyard.errors import ConfigError
from workers.engines.base import GenerationRequest, GenerationResult
from workers.providers.errors_map import PLACEHOLDER_KEY
from workers.providers.openai_api import (
    PROBE_TIMEOUT_S,
    MaxTokensParam,
    chat_completion,
    make_client,
    probe_simulated,
)

log = logging.getLogger(__name__)


def normalize_base_url(url: str) -> str:
    """``http://gpu1:8000`` → ``http://gpu1:8000/v1`` (vLLM serves its API under /v1); others unchanged."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"vllm-remote: base URL {url!r} is not an http(s) URL")
    return url + "/v1" if parts.path in ("", "/") else url


class RemoteVLLMBackend:
    """A model served by one or more ``vllm serve`` hosts; requests go round-robin over them."""

    kind = "vllm-remote"
    #: Set at start() when every host says it is a simulator; each result also says so.
    simulated = False

    def __init__(self, served_model: str, base_urls: list[str], *, api_key: str | None = None,
                 timeout_s: float = 300.0, max_tokens_param: MaxTokensParam = "max_tokens") -> None:
        if not base_urls:
            raise ConfigError("vllm-remote: at least one base URL is required")
        self.served_model = served_model
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        # vllm serve checks a key only when started with --api-key; any string will do otherwise.
        self._key = api_key or PLACEHOLDER_KEY
        self.timeout_s = timeout_s
        self.max_tokens_param: MaxTokensParam = max_tokens_param
        self._clients: list[tuple[str, openai.AsyncOpenAI]] = []
        self._turn: Iterator[tuple[str, openai.AsyncOpenAI]] | None = None

    async def start(self) -> None:
        self._clients = [(url, make_client(api_key=self._key, base_url=url, timeout_s=self.timeout_s))
                         for url in self.base_urls]
        self._turn = itertools.cycle(self._clients)
        probes = [await probe_simulated(lambda c=c: c.models.with_raw_response.list(timeout=PROBE_TIMEOUT_S))
                  for _, c in self._clients]
        self.simulated = all(probes)
        log.info("vllm-remote backend ready: model %s on %s host(s), simulated %s", self.served_model,
                 len(self._clients), self.simulated)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._turn is None:
            raise RuntimeError("RemoteVLLMBackend.generate() called before start()")
        url, client = next(self._turn)
        result = await chat_completion(client, request, provider=self.kind,
                                       model=request.model or self.served_model,
                                       max_tokens_param=self.max_tokens_param, secrets=(self._key,))
        result.extra["host"] = url
        return result

    async def shutdown(self) -> None:
        for _, client in self._clients:
            await client.close()
        self._clients, self._turn = [], None
