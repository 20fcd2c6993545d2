"""What the router reads from every prompt, in one call: the PII scan, the complexity score and the expected
output length, sharing what each would otherwise redo: lower-casing the text, a prefilter pass over it (one
Hyperscan database holds the PII detectors' triggers and the output-length patterns) and, for texts the score
reads whole, its words."""

from __future__ import annotations

from producer import complexity, output_length, pii
from producer.pii import PIIReport
from producer.prefilter import Gate

_GATE = Gate([*pii.TRIGGERS, *output_length.CASE_BLIND_TRIGGERS])


def classify(text: str, max_tokens: int | None) -> tuple[PIIReport, float, int]:
    """``pii.scan(text)``, ``complexity.complexity_score(text)`` and
    ``output_length.expected_output_tokens(text, max_tokens)``, exactly (tests/unit/test_classify.py)."""
    if len(text) > output_length.SAMPLE:
        # The length estimate reads a long text's head and tail through a pass of its own (see
        # expected_output_tokens), and the score reads them too: nothing to share but the PII detectors' pass.
        return pii.scan(text), complexity.complexity_score(text), output_length.expected_output_tokens(text, max_tokens)
    lowered = text.lower()
    read = lowered, _GATE.fired(text, lowered)
    # The score's words of the lower-cased text also serve the PII scan's screen for names typed in lower case.
    words = complexity.words_of(lowered) if len(text) <= complexity.SAMPLE_CHARS else None
    return (
        pii.scan(text, read, words[1] if words is not None else None),
        complexity.complexity_score(text, lowered, words),
        output_length.expected_output_tokens(text, max_tokens, read),
    )
