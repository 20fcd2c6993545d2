"""Local HTTP servers that speak the OpenAI and Anthropic wire protocols, for tests, benchmarks and the demo.

Everything they return is simulated and says so: the header ``x-switchyard-simulated: true`` on every
response and generated text that starts with ``[simulated <model>]``.

In-process::

    with openai_server(rpm=60, tpm=40_000) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="local")
        srv.fail_next(2, status=429, retry_after=3)
        ...
        assert not srv.saw_prompt("my secret prompt")

As a process: ``python -m switchyard.localapi openai --port 8001 --rpm 60 --tpm 40000``.
"""

from switchyard.localapi.anthropic_server import AnthropicDialect, anthropic_server
from switchyard.localapi.openai_server import OpenAIDialect, openai_server
from switchyard.localapi.server import (
    SIMULATED_HEADER,
    RequestRecord,
    SimulatedAPIServer,
    SlidingWindowLimiter,
    prompt_hash,
)

__all__ = [
    "SIMULATED_HEADER",
    "AnthropicDialect",
    "OpenAIDialect",
    "RequestRecord",
    "SimulatedAPIServer",
    "SlidingWindowLimiter",
    "anthropic_server",
    "openai_server",
    "prompt_hash",
]
