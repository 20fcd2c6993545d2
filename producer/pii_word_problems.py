"""Quantitative word problems ("Janet's ducks lay 16 eggs ... how many"): names in them are placeholders.

:func:`is_word_problem` tells such a text from prose; :func:`_label_spans` finds the words after a label ("Name:",
"Dear"), the only lone words :mod:`producer.pii_names` still judges in one; :data:`TRIGGERS` are what both
look for, for :mod:`producer.prefilter`.
"""

from __future__ import annotations

import re

from producer.pii_name_tokens import _CAP

_NUMBER_WORDS = frozenset(
    w + p
    for w in str.split(
        "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty "
        "fifty hundred thousand dozen twice half double triple thrice third quarter"
    )
    for p in ("", ".", ",", "?", ":", ";", "!")
)
_TWO_NUMBERS = re.compile(r"\d\D+\d")
_THREE_NUMBERS = re.compile(r"\d\D+\d+\D+\d")
_DIGIT = re.compile(r"\d")


def is_word_problem(text: str, lowered: str, fired: set[str] | None = None) -> bool:
    """Quantities and a question about them: names in such a text are placeholders, not people.

    ``fired``: the prefilter's triggers for this text (:data:`TRIGGERS`), or None. A test whose trigger did not
    fire is skipped: each number regex walks the whole text, at more than the cost of the rest of this function.
    """
    if (fired is None or "how_many" in fired) and ("how many" in lowered or "how much" in lowered):
        return True
    digits = _DIGIT.search(text) is not None if fired is None else "digit" in fired
    if digits and (fired is None or "three_numbers" in fired) and _THREE_NUMBERS.search(text) is not None:
        return True
    asks = (fired is None or "asks" in fired) and (
        "?" in text or "calculate" in lowered or "find " in lowered or "total" in lowered
    )
    if not asks:
        return False
    if digits and (fired is None or "two_numbers" in fired) and _TWO_NUMBERS.search(text) is not None:
        return True
    return sum(map(_NUMBER_WORDS.__contains__, lowered.split())) + digits >= 2


_LABEL_KEYS = ("name", "dear", "patient", ":", "i'm", "i am", "signed", "regards", "sincerely", "call", "known as")


_LABEL_NAMES = tuple(f"label{i}" for i in range(len(_LABEL_KEYS)))


def _label_spans(text: str, lowered: str, fired: set[str] | None = None) -> list[re.Match[str]]:
    """The capitalised word right after each label ("Name:", "Dear", "I'm"): in a word problem these are the
    only lone words worth judging. ``fired``: as for :func:`is_word_problem` (only the labels present are
    searched for)."""
    found = []
    for name, key in zip(_LABEL_NAMES, _LABEL_KEYS, strict=True):
        if fired is not None and name not in fired:
            continue
        at = lowered.find(key)
        while at != -1:
            m = _CAP.search(text, at + len(key), at + len(key) + 12)
            if m is not None:
                found.append(m)
            at = lowered.find(key, at + 1)
    return found


#: For :mod:`producer.prefilter`: what the tests of :func:`is_word_problem` and :func:`_label_spans` look for
#: (case-blind where they read the lower-cased text).
TRIGGERS = [
    ("how_many", "how many|how much", True),
    ("digit", _DIGIT.pattern, False),
    ("two_numbers", _TWO_NUMBERS.pattern, False),
    ("three_numbers", _THREE_NUMBERS.pattern, False),
    ("asks", r"\?|calculate|find |total", True),
    *((name, re.escape(key), True) for name, key in zip(_LABEL_NAMES, _LABEL_KEYS, strict=True)),
]
