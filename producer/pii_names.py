"""Names of people, found without a neural model.

Evidence, strongest first:

1. a title or a label right before a capitalised word: "Dr. Okafor", "Patient: Maria Gonzalez", "my name is
   ...", "Dear ...", "signed ...";
2. a run of two or more capitalised words that reads as a full name: a known first name followed by a known
   surname, an initial, or a word shaped like a surname (-son, -ović, -ska, ...);
3. a lone known first name, or a lone surname, in prose that is *not* a quantitative word problem.

The third rule is what keeps "Janet's ducks lay 16 eggs" clean while "Why is Rebecca so impulsive?" is
flagged: names in maths word problems are placeholders, names in free prose usually refer to someone.

The gazetteer (``data/names.json``, sources in ``data/NAMES_SOURCES.md``) holds first names and surnames from
Faker's locales and the US census, plus the common English words used to tell "Will", "Rose" or "Brown" the
word from the name. Everything here runs on every job, so lists are sets and suffix tests use
``str.endswith``: large regex alternations cost about a microsecond per character in Python's engine.

The lists are in :mod:`producer.pii_name_lists`, the candidates (capitalised words and runs) in
:mod:`producer.pii_name_tokens`, the word-problem test in :mod:`producer.pii_word_problems`; this module judges
the candidates.
"""

from __future__ import annotations

from itertools import compress, count

from producer.pii_lower_names import labelled_in_lower_case, names_in_lower_case

# ``X as X``: re-exported, as pii, pii_address and the tests import these from here. bench/_names_build.py swaps
# FIRST and LAST in this module, which is why every function that reads them stays here.
from producer.pii_name_lists import (
    _FAMOUS,
    _LABEL_LAST,
    _LABEL_PAIRS,
    _NEVER_A_NAME,
    _PRONOUN_I,
    _ROLES,
    _SURNAME_BROAD,
    _SURNAME_DISTINCT,
    _TITLES,
    COMMON,
    FIRST,
    LAST,
)
from producer.pii_name_lists import _PARTICLES as _PARTICLES
from producer.pii_name_lists import PLACES as PLACES
from producer.pii_name_tokens import _CAP, _MULTI, _lower_words, _plain, _runs, _token_spans
from producer.pii_name_tokens import _PUNCT as _PUNCT
from producer.pii_name_tokens import UPPER as UPPER
from producer.pii_name_tokens import _particles_only as _particles_only
from producer.pii_word_problems import TRIGGERS as TRIGGERS
from producer.pii_word_problems import _label_spans
from producer.pii_word_problems import is_word_problem as is_word_problem

Hit = tuple[str, int, int, float]


def _labelled(plain: str, start: int) -> tuple[bool, bool]:
    """Whether a label ("my name is", "Dear", "Patient:") or a role ("CEO", "Producer") ends just before.
    ``plain``: the lower-cased text with punctuation as spaces (:func:`_plain`)."""
    words = plain[max(0, start - 40) : start].split()
    if not words:
        return False, False
    last = words[-1]
    label = last in _LABEL_LAST or tuple(words[-2:]) in _LABEL_PAIRS
    return label, last in _ROLES



_SENT_END = frozenset(".!?:;\n\"“”'‘’()[]>-–—*#•")


def _is_sentence_start(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i < 0 or text[i] in _SENT_END


def _namey(lw: str) -> bool:
    return (lw in FIRST or lw in LAST) and lw not in COMMON


def _surnamey(lw: str) -> bool:
    return lw in LAST or lw.endswith(_SURNAME_BROAD)



def _judge(text: str, plain: str, run: list[tuple[int, int, str]], quant: bool, lower: bool) -> Hit | None:
    lws = [w.lower() for _, _, w in run]
    # Leading capitalised words that are not names ("Producer", "CEO", "I'm") are not part of the name.
    k = 0
    while k < len(run) and lws[k] in _NEVER_A_NAME:
        k += 1
    if k == len(run):
        return None
    titled = lws[k] in _TITLES
    if titled:
        k += 1
        if k == len(run):
            return None
    run, lws = run[k:], lws[k:]
    start, end = run[0][0], run[-1][1]
    if titled:
        # "Mr. Tan sold his house for $400 000": a titled surname in a word problem is a placeholder too.
        return ("PERSON", start, end, 0.85) if len(run) >= 2 or not quant else None
    if lws[0] in COMMON and len(run) == 1:
        return None
    if not lower and all(w.isupper() and len(w) > 1 for _, _, w in run):
        # Shouted text ("CAN I SPEAK TO A REAL PERSON") is only a name where known names stand at both ends of the
        # run ("ANNA AND ANDREW"), or a known first name right before a known surname: a shouted sentence is one
        # run ("PLEASE EMAIL MARIA GONZALEZ AT HER HOME").
        pairs = [(0, len(run) - 1), *((i, i + 1) for i in range(len(run) - 1))] if len(run) >= 2 else []
        for i, j in pairs:
            a, b = lws[i], lws[j]
            if a in FIRST and b in LAST and (_namey(a) or _namey(b)):
                return ("PERSON", run[i][0], run[j][1], 0.7)
        return None
    listed = lws[0] not in COMMON or lws[0] in FIRST or lws[0] in LAST
    label, role = _labelled(plain, start)
    if listed and label:
        return ("PERSON", start, end, 0.8)
    if _FAMOUS.issuperset(lws):
        return None  # a labelled "Dear Newton" still counts; a bare "Fibonacci" or "Elon Musk" does not
    if role and lws[0] not in COMMON:
        return ("PERSON", start, end, 0.7)
    full = [lw for (_, _, w), lw in zip(run, lws, strict=True) if len(w) > 1]
    initials = len(full) < len(run)
    if len(full) >= 2:
        a, b = full[0], full[-1]
        a_first = a in FIRST
        strong = (a_first and a not in COMMON) or (b in LAST and b not in COMMON)
        if lower:
            # Without capitals only the lists speak: both words must be known names, neither a common word.
            both = a_first and a not in COMMON and (b in LAST or b in FIRST) and b not in COMMON
            return ("PERSON", start, end, 0.7) if both else None
        b_name = b in LAST or b in FIRST or b.endswith(_SURNAME_BROAD)
        if a_first and b_name and (strong or initials):
            return ("PERSON", start, end, 0.8)
        if a_first and a not in COMMON and b not in COMMON:
            return ("PERSON", start, end, 0.6)  # a known first name and an unknown word: "Zargan Vedzizhev"
        if _surnamey(b) and a not in COMMON and b not in COMMON and len(run) < 4:
            return ("PERSON", start, end, 0.5)
        if (
            len(run) == 2
            and a not in COMMON
            and b not in COMMON
            and not _is_sentence_start(text, start)
            and all(w.count("-") <= 1 and all(p[1:].islower() for p in w.split("-")) for _, _, w in run)
        ):
            return ("PERSON", start, end, 0.4)  # two unknown capitalised words mid-sentence: "Irenke Sörös"
    # A single name: only outside maths word problems, where names are placeholders ("Janet's ducks").
    if not quant:
        for (s, e, w), lw in zip(run, lws, strict=True):
            if len(w) < 3 or w.isupper():
                continue
            if _namey(lw):
                return ("PERSON", s, e, 0.5 if lw in FIRST else 0.4)
            if lw not in COMMON and lw.endswith(_SURNAME_DISTINCT) and not _is_sentence_start(text, s):
                return ("PERSON", s, e, 0.4)  # "says Hartvigsson", "ex-Zombie Ryhänen"
    return None


#: Words that make the word itself a candidate in lower-case text, words that make the word after one, the first
#: words of two-word labels, and all three (one lookup per word finds the few that play any part).
_LOWER_SELF = frozenset(w for w in FIRST if len(w) > 1) | _TITLES
_LOWER_NEXT = _LABEL_LAST | _PRONOUN_I
_PAIR_HEADS = frozenset(a for a, _ in _LABEL_PAIRS)
_LOWER_CUES = _LOWER_SELF | _LOWER_NEXT | _PAIR_HEADS


def _lower_candidates(lws: list[str]) -> list[int]:
    """Indices of the words judged in lower-case text: a known first name or a title, a word right after a label
    or "I", a word right after a two-word label ("my son ..."). The words that play a part are found by a set
    lookup mapped over all of them in C (a Python loop over every word cost more than all the rest)."""
    n = len(lws)
    found = set()
    for i in compress(count(), map(_LOWER_CUES.__contains__, lws)):
        w = lws[i]
        if w in _LOWER_SELF:
            found.add(i)
        if w in _LOWER_NEXT:
            found.add(i + 1)
        if w in _PAIR_HEADS and i + 1 < n and (w, lws[i + 1]) in _LABEL_PAIRS:
            found.add(i + 2)
    return sorted(i for i in found if i < n)


def _find_persons_lower(text: str, lowered: str, quant: bool) -> list[Hit]:
    """All-lower-case text ("follow up with patricia desrosiers") has no capitals to go by: a candidate (see
    :func:`_lower_candidates`) is judged with the word after it, on the lists alone."""
    hits: list[Hit] = []
    lws, bounds = _lower_words(text)
    n = len(lws)
    plain = ""
    for i in _lower_candidates(lws):
        if lws[i] in _NEVER_A_NAME and (i + 1 == n or lws[i + 1] in _NEVER_A_NAME):
            continue  # "in", "can", "will" before a common word: _judge drops such a run whole
        pair = [(bounds[2 * k], bounds[2 * k + 1], lws[k]) for k in range(i, min(i + 2, n))]
        plain = plain or _plain(lowered)
        hit = _judge(text, plain, _runs(text, pair)[0], quant, True)
        if hit is not None:
            hits.append(hit)
    return hits


def find_persons(
    text: str,
    lowered: str,
    has_upper: bool,
    quant: bool,
    fired: set[str] | None = None,
    words: list[str] | None = None,
    every: bool = True,
) -> list[Hit]:
    """``fired``: the prefilter's triggers for this text, or None (see :func:`is_word_problem`); ``words``: see
    :func:`producer.pii_lower_names.names_in_lower_case`; ``every``: False when the caller needs only whether a
    name is present (once one written with capitals is found, the lower-case ones are not looked for)."""
    if not has_upper:
        return _find_persons_lower(text, lowered, quant)
    hits = _find_capitalised(text, lowered, quant, fired)
    if every or not hits:
        hits += names_in_lower_case(text, words) + labelled_in_lower_case(text, lowered, fired)
    return hits


def _find_capitalised(text: str, lowered: str, quant: bool, fired: set[str] | None) -> list[Hit]:
    hits: list[Hit] = []
    plain = ""  # _plain(lowered), made when the first candidate reaches _judge
    if quant:
        # A word problem: lone names are placeholders, so only runs of two or more capitalised words matter,
        # and words right after a label.
        multi = _MULTI.finditer(text)
        spans = [(m.start(), m.end(), m.group()) for r in multi for m in _CAP.finditer(text, r.start(), r.end())]
        labelled = [(m.start(), m.end(), m.group()) for m in _label_spans(text, lowered, fired)]
        if labelled:
            # A word after a label may also sit in a run: keep one per position (the run's, as it is whole).
            spans = sorted({span[0]: span for span in [*labelled, *spans]}.values())
    else:
        tokens = _CAP.findall(text)
        # Most prose's capitalised words are all sentence openers and common words, which _judge drops
        # whatever run they are in: tested in C (one join, lower, split and set test) before any Python loop.
        if _NEVER_A_NAME.issuperset(" ".join(tokens).lower().split()):
            return hits
        spans = _token_spans(text, tokens)
    for run in _runs(text, spans):
        if len(run) == 1:
            lw = run[0][2].lower()
            if lw in COMMON or lw in _PRONOUN_I:
                # "The", "However", "I'm": the bulk of capitalised words. _judge skips such a word at the head of
                # a run (a title too), which leaves nothing of a run of one: rejected here before any work.
                continue
        plain = plain or _plain(lowered)
        hit = _judge(text, plain, run, quant, False)
        if hit is not None:
            hits.append(hit)
    return hits
