"""Names typed in lower case inside text that has capitals ("Please email maria gonzalez at her home"), which the
capitalised-word rules of :mod:`producer.pii_names` never see (text without any capitals has a path of its own
there). Two rules, both kept narrow because a word written in lower case in such text is usually just a word:

* a known first name and a known name side by side, neither a common word ("maria gonzalez", "james o'brien"),
  or a known name right after a label or a title ("my neighbour maria", "dr. okafor");
* after a label that announces a name ("Patient:", "my name is", "Dear", "signed,", "call"), the first word that
  is not a common word, known or not ("patient: aroha ngata").

Both read the word lists of :mod:`producer.pii_name_lists` directly (``bench/classify.py ablate-faker`` swaps
the lists of pii_names only, so it measures the capitalised rules).
"""

from __future__ import annotations

import re

from producer.pii_name_lists import _LABEL_LAST, _LABEL_PAIRS, _NEVER_A_NAME, _TITLES, COMMON, FIRST, LAST
from producer.pii_name_tokens import _plain
from producer.pii_word_problems import _LABEL_KEYS, _LABEL_NAMES

Hit = tuple[str, int, int, float]


#: Known names that are not common words, for names typed in lower case in text with capitals.
#: Entries that are no words ("'s", "d'") and interjections spelt like names ("oh", "ah") are left out.
_NAMES_NOT_COMMON = frozenset(
    w for w in FIRST | LAST
    if w not in COMMON and len(w) > 1 and w[0].isalpha() and w[-1].isalpha() and w not in ("ah", "oh", "im")
)
_FIRST_NOT_COMMON = _NAMES_NOT_COMMON & FIRST
#: What the screen below looks for: the screen reads words split at apostrophes and hyphens, so a name written
#: with one ("o'brien") is stood for by its longest part ("brien"); its short parts ("o", "d") are in every text.
_NAME_SCREEN = frozenset(w if w.isalpha() else max(_plain(w).split() or [w], key=len) for w in _NAMES_NOT_COMMON)


def names_in_lower_case(text: str, words: list[str] | None = None) -> list[Hit]:
    """Names typed in lower case in text that has capitals ("Please email maria gonzalez at her home"), which the
    capitalised-word rules never see: a known first name and a known name side by side, neither a common word
    ("maria gonzalez", "james o'brien"); or a known name that is not a common word right after a label or a
    title ("my neighbour maria", "dr. okafor"). Lone lower-case words are not read as names here: in text with
    capitals, writing one in lower case says it is a word; nor are names that are also common words ("mark
    jones": "many sterling" reads the same). Screened in C first (one split and a set intersection): most texts
    hold no such name, and the few found are examined where they stand, without reading every word. ``words``:
    the lower-cased text's words with punctuation split off, when the caller has them (the screen then costs a
    set intersection alone; names written with capitals pass it too, and are dropped where they stand)."""
    found = _NAME_SCREEN.intersection(_plain(text).split() if words is None else words)
    hits: dict[int, Hit] = {}
    for token in found:
        at = text.find(token)
        while at != -1:
            word = _word_around(text, at)
            at = text.find(token, at + len(token))
            if word is None:
                continue
            s, e, w = word
            if w in _FIRST_NOT_COMMON and text[e : e + 1] == " ":
                m = _LOWER_NAME_WORD.match(text, e + 1)
                if m is not None and m.group() in _NAMES_NOT_COMMON and _edge(text, m.end()):
                    hits[s] = ("PERSON", s, m.end(), 0.6)
                    continue
            if _announced(text, s, titles=True):
                hits.setdefault(s, ("PERSON", s, e, 0.7))
    return list(hits.values())


#: A word in lower case (its parts joined by an apostrophe or a hyphen: "o'brien", "jean-luc").
_LOWER_NAME_WORD = re.compile(r"[^\W\d_A-ZÀ-ÖØ-Þ]+(?:['’-][^\W\d_A-ZÀ-ÖØ-Þ]+)*")
_WORD_CHARS = frozenset("'’-")
#: What may stand either side of such a name besides blanks: the punctuation that both the screen's words
#: (``_plain``) and the score's (``complexity.words_of``) split at, so that either finds the name's longest part
#: and both find the same names ("maria2", "<maria>" or "maria+x" are not names here, whichever screen ran).
_NAME_EDGES = frozenset("\"'.,;:!?()[]{}*/\\$%-“”‘’–—")


def _edge(text: str, i: int) -> bool:
    return i < 0 or i >= len(text) or text[i].isspace() or text[i] in _NAME_EDGES


def _word_around(text: str, at: int) -> tuple[int, int, str] | None:
    """The whole word holding ``text[at]`` when it is written in lower case, stands apart (see _NAME_EDGES) and
    is a known name that is not a common word: (start, end, word); else None."""
    s = at
    while s > 0 and (text[s - 1].isalpha() or text[s - 1] in _WORD_CHARS):
        s -= 1
    while s < at and not text[s].isalpha():
        s += 1  # a leading apostrophe or hyphen is not part of the word
    m = _LOWER_NAME_WORD.match(text, s)
    if m is None or m.end() <= at or not _edge(text, s - 1) or not _edge(text, m.end()):
        return None
    w = m.group()
    return (s, m.end(), w) if w in _NAMES_NOT_COMMON else None


#: A lower-case word after a label key, a few separators on: "Patient: aroha", "call   maria".
_AFTER_KEY = re.compile(r"[\s:,.\-]{0,4}([^\W\d_A-ZÀ-ÖØ-Þ]+(?:['’-][^\W\d_A-ZÀ-ÖØ-Þ]+)*)")


def _announced(text: str, start: int, titles: bool = False) -> bool:
    """Whether a label ends right before ``start`` ("patient:", "my name is", "dear"), or with ``titles`` a title
    ("dr.")."""
    before = _plain(text[max(0, start - 40) : start].lower()).split()
    if not before:
        return False
    return before[-1] in _LABEL_LAST or tuple(before[-2:]) in _LABEL_PAIRS or (titles and before[-1] in _TITLES)


def labelled_in_lower_case(text: str, lowered: str, fired: set[str] | None) -> list[Hit]:
    """The first lower-case word after a label that announces a name, when it is no common word ("Patient: aroha
    ngata", "my name is aroha"): as the capitalised rules take any word after such a label, known or not. The
    label keys are the prefilter's (``fired``: its triggers for this text, or None); "my name is" is found at
    "name", and the word after it ("is") is passed over as a common word."""
    hits: list[Hit] = []
    for name, key in zip(_LABEL_NAMES, _LABEL_KEYS, strict=True):
        if fired is not None and name not in fired:
            continue
        at = lowered.find(key)
        while at != -1:
            pos = at + len(key)
            at = lowered.find(key, at + 1)
            for _ in range(2):  # the word after the key, or after a common word after it ("name is ...")
                m = _AFTER_KEY.match(text, pos)
                if m is None or not _edge(text, m.start(1) - 1) or not _edge(text, m.end(1)):
                    break
                w = m.group(1)
                if w in COMMON or w in _NEVER_A_NAME:
                    pos = m.end(1)
                    continue
                if len(w) > 1 and _announced(text, m.start(1)):
                    hits.append(("PERSON", m.start(1), m.end(1), 0.7))
                break
    return hits
