"""Offline PII and secrets detector: the router keeps every flagged job on self-hosted models.

Recall comes first. A job whose personal data or credential reaches OpenAI or Anthropic is a breach; a job
kept on a self-hosted model by a false alarm merely runs somewhere cheaper. So ambiguous evidence is reported
(a lower confidence) rather than dropped, and :func:`scan` flags a job on *any* finding.

The detectors are plain regular expressions, checksums (Luhn, IBAN mod-97, ABA, SSN area rules) and a name
gazetteer; nothing is downloaded or loaded at run time beyond ``data/names.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from producer import pii_address, pii_names, pii_patterns, pii_secrets
from producer.pii_address import find_addresses
from producer.pii_names import find_persons, is_word_problem
from producer.pii_patterns import find_dob, find_emails, find_ipv6, find_numbers
from producer.pii_secrets import find_secrets
from producer.prefilter import Gate

Hit = tuple[str, int, int, float]


@dataclass(frozen=True, slots=True)
class PIIFinding:
    """One piece of PII or one secret: its kind and where it is (never its value)."""

    type: str
    start: int
    end: int
    confidence: float


@dataclass(frozen=True, slots=True)
class PIIReport:
    """What the router needs: whether the job holds PII and of which kinds (sorted, unique)."""

    contains_pii: bool
    types: tuple[str, ...]


_CLEAN = PIIReport(False, ())
_CAPITALISED = re.compile(r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]|[A-Z]{2}")


#: Every trigger of the detectors here, for a caller that runs one prefilter pass for several classifiers.
TRIGGERS = [*pii_secrets.TRIGGERS, *pii_patterns.TRIGGERS, *pii_address.TRIGGERS, *pii_names.TRIGGERS]
_GATE = Gate(TRIGGERS)


#: What a caller that runs one prefilter pass for several classifiers hands over: ``text.lower()``, and the pass's
#: answer for the text from a database holding :data:`TRIGGERS` (other triggers' names are ignored) or None.
Read = tuple[str, set[str] | None]


def _hits(
    text: str, lowered: str, fired: set[str] | None, words: list[str] | None = None, every: bool = True
) -> list[Hit]:
    # ``lowered`` serves the keyword checks and ``fired`` says which detectors can find anything (None: all of
    # them; see producer.prefilter). Capitalisation is evidence only where it is used: text whose only capital
    # is "I" is read as lower case.
    has_upper = lowered != text and _CAPITALISED.search(text) is not None
    hits: list[Hit] = []
    hits += find_secrets(text, lowered, fired)
    if fired is None or "emails" in fired:
        hits += find_emails(text, lowered)
    if fired is None or "numbers" in fired:
        hits += find_numbers(text, lowered)
    if fired is None or "dob" in fired:
        hits += find_dob(text, lowered)
    if fired is None or "ipv6" in fired:
        hits += find_ipv6(text, lowered)
    units = fired is None or "addr_unit" in fired  # "apt 4", "p.o. box 12": looked for in text without capitals
    pairs = fired is None or ("addr_upper" if has_upper else "addr_lower") in fired
    if pairs or "addr_corner" in fired or (units and not has_upper):
        hits += find_addresses(text, lowered, has_upper, units)
    # Names in a word problem are placeholders.
    quant = is_word_problem(text, lowered, fired)
    hits += find_persons(text, lowered, has_upper, quant, fired, words, every)
    return hits


def scan(text: str, read: Read | None = None, words: list[str] | None = None) -> PIIReport:
    """Whether ``text`` holds PII or secrets, and which kinds. The fast path called on every job; ``read``: see
    :data:`Read` (by default this module lower-cases and prefilters the text itself); ``words``: the words of the
    lower-cased text with punctuation split off (``complexity.words_of(lowered)[1]``), when the caller has them."""
    if not text:
        return _CLEAN
    if read is None:
        lowered = text.lower()
        read = lowered, _GATE.fired(text, lowered)
    types = {hit[0] for hit in _hits(text, *read, words, every=False)}
    if not types:
        return _CLEAN
    return PIIReport(True, tuple(sorted(types)))


def find(text: str, gated: bool = True) -> list[PIIFinding]:
    """Every finding, ordered by position: for debugging, benchmarks, and checking the prefilter
    (``gated=False`` runs every detector)."""
    if not text:
        return []
    lowered = text.lower()
    hits = _hits(text, lowered, _GATE.fired(text, lowered) if gated else None)
    return [PIIFinding(*hit) for hit in sorted(set(hits), key=lambda h: (h[1], h[2], h[0]))]
