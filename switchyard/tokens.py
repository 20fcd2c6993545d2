"""Cheap token estimates.

Claude has no public tokenizer and tiktoken needs files we may not have, so everything that must know a token
count *before* the call (rate-limit reservations, budgets, chunking, routing) uses this one estimate. Real
counts from the engine or the provider's usage always replace it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: English averages ~4 characters per token for GPT/Llama BPE vocabularies; we round up (3.6) so that
#: reservations err on the side of holding too much, never too little.
CHARS_PER_TOKEN = 3.6
#: Chat formatting overhead per message (role markers, separators).
TOKENS_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of a plain string."""
    if not text:
        return 0
    return int(len(text) / CHARS_PER_TOKEN) + 1


def message_text(content: Any) -> str:
    """The text of a chat message's ``content``: a string, or OpenAI's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def estimate_messages_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimated prompt tokens of a chat conversation."""
    total = 3  # reply priming
    for m in messages:
        total += TOKENS_PER_MESSAGE + estimate_text_tokens(message_text(m.get("content")))
    return total
