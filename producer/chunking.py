"""Long documents: split a prompt that does not fit its model's context into parts (map), then combine the
partial answers into one (reduce).

The instruction is assumed to open the user's message (the usual "Summarise this contract: ..." shape): its
first ``TASK_HEAD_CHARS`` characters are repeated in every part and in the combining prompt, so each part is
processed for the same task. Parts break at paragraph, then sentence, then word boundaries. Sizes are computed
with the conservative token estimate of :mod:`switchyard.tokens`, so a part never overflows the context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from switchyard.tokens import CHARS_PER_TOKEN, estimate_text_tokens, message_text

TASK_HEAD_CHARS = 400
#: Completion tokens each part may use: a partial answer, not the final one.
MAP_MAX_TOKENS = 512
#: Tokens kept free for chat formatting and the part's framing text.
MARGIN_TOKENS = 200
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))


@dataclass(frozen=True, slots=True)
class SplitPlan:
    system: list[dict[str, Any]]  # system messages, repeated in every part
    task: str  # the head of the user's message, repeated in every part
    parts: list[str]  # the document, in parts that fit
    map_max_tokens: int


def _cut(text: str, limit: int) -> int:
    """Index at which to cut ``text`` (<= limit chars), at the best boundary available."""
    if len(text) <= limit:
        return len(text)
    window = text[:limit]
    for pattern in _BREAKS:
        ends = [m.end() for m in pattern.finditer(window)]
        if ends and ends[-1] > limit // 2:
            return ends[-1]
    return limit


def split_text(text: str, max_tokens: int) -> list[str]:
    limit = max(200, int(max_tokens * CHARS_PER_TOKEN))
    parts: list[str] = []
    rest = text
    while rest:
        cut = _cut(rest, limit)
        piece = rest[:cut].strip()
        if piece:
            parts.append(piece)
        rest = rest[cut:]
    return parts


def plan_split(messages: list[dict[str, Any]], context_window: int, max_tokens: int) -> SplitPlan:
    """Parts for the last user message of ``messages`` so that each part's prompt fits ``context_window``."""
    system = [m for m in messages if m.get("role") in ("system", "developer")]
    user_texts = [message_text(m.get("content")) for m in messages if m.get("role") not in ("system", "developer")]
    document = "\n\n".join(user_texts)
    task = document[:TASK_HEAD_CHARS]
    map_tokens = min(max_tokens, MAP_MAX_TOKENS)
    overhead = sum(estimate_text_tokens(message_text(m.get("content"))) for m in system)
    overhead += estimate_text_tokens(task) + MARGIN_TOKENS
    room = context_window - map_tokens - overhead
    if room < 256:
        raise ValueError(f"context window {context_window} leaves no room for a part")
    return SplitPlan(system, task, split_text(document, room), map_tokens)


def map_messages(plan: SplitPlan, index: int) -> list[dict[str, Any]]:
    n = len(plan.parts)
    body = (
        f"Task (for the whole document): {plan.task}\n\n"
        f"The document is too long to read at once, so you see part {index + 1} of {n}. Do the task for "
        f"this part only; your answer will be combined with the answers for the other parts.\n\n"
        f"--- part {index + 1} of {n} ---\n{plan.parts[index]}"
    )
    return [*plan.system, {"role": "user", "content": body}]


def reduce_messages(
    system: list[dict[str, Any]], task: str, answers: list[str], context_window: int, max_tokens: int
) -> list[dict[str, Any]]:
    """The combining prompt; partial answers are trimmed evenly if together they would not fit."""
    budget = context_window - max_tokens - MARGIN_TOKENS - estimate_text_tokens(task)
    per_answer = max(64, budget // max(1, len(answers)))
    limit = int(per_answer * CHARS_PER_TOKEN)
    joined = "\n\n".join(f"--- answer for part {i + 1} ---\n{a[:limit]}" for i, a in enumerate(answers))
    body = (
        f"Task (for the whole document): {task}\n\nThe document was processed in {len(answers)} parts. "
        f"Combine the partial answers below into one complete answer to the task.\n\n{joined}"
    )
    return [*system, {"role": "user", "content": body}]
