"""Capitalised words and runs of them: the name candidates of :mod:`producer.pii_names`, and the
punctuation-free lower-cased text its label tests read. This runs on every job: regexes are kept simple
(large alternations cost about a microsecond per character in Python's engine) and the rest is done with
``str`` methods in C.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import accumulate

from producer.pii_name_lists import _PARTICLES, _TITLES

#: Every upper-case Latin letter, for character classes.
UPPER = "".join(chr(c) for c in (*range(0x41, 0x250), *range(0x1E00, 0x1F00)) if chr(c).isupper())
# A capitalised word; an apostrophe or hyphen may join parts (O'Brien, Jean-Luc) but a possessive 's may not.
# Lengths are bounded (no name part is longer than 40 letters) so that a long run of letters (a base64 blob,
# "AAAA...") cannot make the engine retry quadratically.
# Letters as explicit Latin ranges: a range test is cheaper than the Unicode-category test of [^\W\d_].
_LETTER = "A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ"
_TOKEN = rf"[{UPPER}][{_LETTER}]{{0,40}}+(?:['’-](?!s\b)[{_LETTER}]{{1,40}}+){{0,3}}+"
# No look-behind for a word boundary: it would cost the regex its fast skip to the next capital. Matches that
# start inside a word ("3D", "e-Mail") are dropped in Python instead.
_CAP = re.compile(_TOKEN)
# Two or more capitalised words in a row (a superset of name runs; _runs() decides the joins).
_MULTI = re.compile(rf"{_TOKEN}(?:\.? {_TOKEN})+")
_GLUE = frozenset("'’-_0123456789")
_PUNCT = str.maketrans({c: " " for c in "\"'.,;:!?()[]{}<>*/\\|`~@#$%^&=_-–—“”‘’"})
# The same mapping for _plain: a byte table for the ASCII marks, str.replace for the others. str.translate with
# a dict raises and catches a KeyError per distinct unmapped character (~2 us on a 40-character window).
_PUNCT_BYTES = bytes.maketrans(bytes(c for c in _PUNCT if c < 0x80), b" " * sum(c < 0x80 for c in _PUNCT))
_WIDE_PUNCT = tuple(chr(c) for c in _PUNCT if c >= 0x80)


def _plain(lowered: str) -> str:
    """``lowered.translate(_PUNCT)`` (punctuation to spaces, same length), in C: translated once per text, not
    once per candidate name."""
    if not lowered.isascii():
        for c in _WIDE_PUNCT:
            if c in lowered:
                lowered = lowered.replace(c, " ")
    # UTF-8 leaves every ASCII byte alone and puts none inside a multi-byte character.
    return lowered.encode(errors="surrogatepass").translate(_PUNCT_BYTES).decode(errors="surrogatepass")


_LOWER_WORD = re.compile(r"(?<![\w'’-])[^\W\d_]{1,40}(?:['’-](?!s\b)[^\W\d_]{1,40}){0,3}")
# The same words, as re.split's separators (a capturing group keeps them). On ASCII text [^\W\d_] is [a-zA-Z]:
# that form opens on a letter, so re skips to the next one in C, and tests the boundary behind it only there;
# its runs are possessive, as nothing follows them that could need a letter back. tests/unit/test_pii.py
# checks both against _LOWER_WORD.
_LOWER_SPLIT = re.compile(f"({_LOWER_WORD.pattern})")
_LOWER_SPLIT_ASCII = re.compile(r"([a-zA-Z](?<![\w'’-].)[a-zA-Z]{0,39}+(?:['’-](?!s\b)[a-zA-Z]{1,40}+){0,3}+)")


def _lower_words(text: str) -> tuple[list[str], list[int]]:
    """``_LOWER_WORD.finditer(text)`` as the words and their bounds: word k is ``words[k]``, from ``bounds[2k]``
    to ``bounds[2k + 1]``. One split and a running sum of the parts' lengths, both in C: a match object per word
    costs more than the whole scan of a lower-case text's names."""
    parts = (_LOWER_SPLIT_ASCII if text.isascii() else _LOWER_SPLIT).split(text)
    return parts[1::2], list(accumulate(map(len, parts)))


def _particles_only(gap: str) -> bool:
    """Whether every word of ``gap`` is a particle ("van der"). The gap may be the whole paragraph between two
    capitalised words: its first word settles nearly every case, so it is split off alone."""
    head = gap.split(None, 1)
    if not head:
        return True
    if head[0] not in _PARTICLES:
        return False
    return len(head) == 1 or _PARTICLES.issuperset(head[1].split())


def _token_spans(text: str, tokens: list[str]) -> list[tuple[int, int, str]]:
    """Where each of ``_CAP.findall(text)`` is, by ``str.find`` rather than a second pass of the regex: _CAP
    matches at every capital letter (all but that letter is optional), so each token starts at the first capital
    after the one before, which is the first occurrence of the token there."""
    spans = []
    at = 0
    for token in tokens:
        at = text.find(token, at)
        end = at + len(token)
        spans.append((at, end, token))
        at = end
    return spans


def _runs(text: str, spans: Iterable[tuple[int, int, str]]) -> list[list[tuple[int, int, str]]]:
    """Group capitalised words joined by one space, an initial ("J." / "J") or particles ("van der").

    Words that start inside another word ("3D", "e-Mail") are dropped; this loop runs on every prompt, so the
    common case (one space between words) is tested first and cheaply.
    """
    runs: list[list[tuple[int, int, str]]] = []
    current: list[tuple[int, int, str]] = []
    prev_end = -2
    for span in spans:
        start = span[0]
        if start and (text[start - 1].isalpha() or text[start - 1] in _GLUE):
            continue
        if current:
            joined = start == prev_end + 1 and text[prev_end] == " "
            if not joined:
                gap = text[prev_end:start]
                word = current[-1][2]
                joined = (gap in (". ", ".") and (len(word) == 1 or word.lower() in _TITLES)) or (
                    len(gap) > 2 and gap[0] == " " and gap[-1] == " " and _particles_only(gap)
                )
            if not joined:
                runs.append(current)
                current = []
        prev_end = span[1]
        current.append(span)
    if current:
        runs.append(current)
    return runs
