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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

Hit = tuple[str, int, int, float]


def _load() -> tuple[frozenset[str], ...]:
    data = json.loads((Path(__file__).parent / "data" / "names.json").read_text(encoding="utf-8"))
    return tuple(frozenset(data[key].split("\n")) for key in ("first", "last", "common", "places"))


FIRST, LAST, _WORDS, PLACES = _load()
# Words that are never a name on their own: dictionary words, places, languages, months.
COMMON = _WORDS | PLACES

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
_TITLES = frozenset(
    str.split(
        "mr mrs ms miss mx dr prof sir dame lady lord madam madame mme mlle herr frau sr sra srta rev "
        "fr capt lt sgt col gen hon judge justice officer nurse doctor professor mister señor señora "
        "senhor senhora"
    )
)
_PARTICLES = frozenset(str.split("van von de der den del della di da dos das du la le ter ten bin al el af zu"))
# Endings that mark surnames in many languages (str.endswith with a tuple: C speed). The distinctive ones may
# flag a lone unknown word; the broad ones (-er, -es, ...) only complete a full name after a known first name.
_SURNAME_DISTINCT = tuple(
    str.split(
        "sson sen dóttir dottir ović ovic ević evic ić ová ov ev ova eva ina aya ski ska sky ský cki "
        "cka czyk wicz vich vna enko chuk yan idis poulos akis oglu oğlu escu nen inen dze shvili "
        "ström qvist gaard"
    )
)
_SURNAME_BROAD = _SURNAME_DISTINCT + tuple(
    str.split(
        "son ian mann ez es ini elli etti ucci ssi ier eau aux ault berg stein feld lund haus ach er "
        "aari anen onen lehto ink uk"
    )
)
# Job titles and roles written before a name: "Producer Liviana Palerma", "tennis player Amy Jones".
_ROLES = frozenset(
    str.split(
        "producer director ceo cfo cto coo founder co-founder manager engineer writer author artist "
        "singer player coach commenter speaker editor reporter journalist agent secretary president "
        "chairman chairwoman minister senator colleague assistant songwriter musician actor actress "
        "lawyer attorney accountant consultant analyst officer detective captain teacher student "
        "intern nurse surgeon dentist pharmacist"
    )
)
# Labels that announce a name: what follows is a name even when no list knows it. Checked on the last one to
# three words before a candidate (punctuation dropped), as sets, not one big regex alternation.
_LABEL_LAST = frozenset(
    str.split(
        "name named called dear signed sincerely regards cheers thanks attn attention patient client "
        "applicant tenant employee student guardian beneficiary spouse husband wife cc author witness "
        "contact heard surname nickname username hi hello hey call ask tell email text thank met says said "
        "asks asked told replied"
    )
)
_LABEL_PAIRS = frozenset(
    tuple(p.split())
    for p in str.split(
        "name is|name s|i m|i am|this is|call me|calls me|known as|goes by|speak to|spoke to|spoke with|"
        "talk to|talked to|up with|names are|my kid|my son|my daughter|my child|my mother|my father|"
        "my mom|my dad|my brother|my sister|my friend|my boss|my colleague|my manager|my neighbor|"
        "my neighbour|my doctor|my grandson|my granddaughter|my nephew|my niece|my cousin|my uncle|"
        "my aunt|my partner|my husband|my wife|partner s|is named",
        "|",
    )
)
_PUNCT = str.maketrans({c: " " for c in "\"'.,;:!?()[]{}<>*/\\|`~@#$%^&=_-–—“”‘’"})
# The same mapping for _plain: a byte table for the ASCII marks, str.replace for the others. str.translate with
# a dict raises and catches a KeyError per distinct unmapped character (~2 us on a 40-character window).
_PUNCT_BYTES = bytes.maketrans(bytes(c for c in _PUNCT if c < 0x80), b" " * sum(c < 0x80 for c in _PUNCT))
_WIDE_PUNCT = tuple(chr(c) for c in _PUNCT if c >= 0x80)
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


def _plain(lowered: str) -> str:
    """``lowered.translate(_PUNCT)`` (punctuation to spaces, same length), in C: translated once per text, not
    once per candidate name."""
    if not lowered.isascii():
        for c in _WIDE_PUNCT:
            if c in lowered:
                lowered = lowered.replace(c, " ")
    # UTF-8 leaves every ASCII byte alone and puts none inside a multi-byte character.
    return lowered.encode(errors="surrogatepass").translate(_PUNCT_BYTES).decode(errors="surrogatepass")


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
# Public figures and eponyms ("Fibonacci numbers", "Bayes' rule", "Elon Musk"): not private persons. A short
# hand list of the ones prompts mention most; anything else about a famous person is still flagged.
_FAMOUS = frozenset(
    str.split(
        "fibonacci newton einstein darwin shakespeare socrates plato aristotle euler gauss pythagoras turing "
        "dijkstra bayes fourier laplace riemann euclid kepler galileo freud marx keynes napoleon bernoulli "
        "markov boolean hilbert fermat descartes leibniz nietzsche tolstoy dostoevsky voltaire rousseau hobbes "
        "hume mozart beethoven picasso gandhi mandela obama churchill elon musk zuckerberg bezos frodo baggins "
        "sherlock gatsby hamlet"
    )
)
# Capitalised words that open a sentence before a name but are never part of it.
_PRONOUN_I = frozenset(
    str.split("i i'm i’m i'd i’d i'll i’ll i've i’ve hi hello hey dear thanks cheers regards sincerely signed attn cc")
)
# Words _judge skips at the head of a run, and so in every position of a run made only of them.
_NEVER_A_NAME = (COMMON | _PRONOUN_I) - _TITLES
_LOWER_WORD = re.compile(r"(?<![\w'’-])[^\W\d_]{1,40}(?:['’-](?!s\b)[^\W\d_]{1,40}){0,3}")


def _is_sentence_start(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i < 0 or text[i] in _SENT_END


def _namey(lw: str) -> bool:
    return (lw in FIRST or lw in LAST) and lw not in COMMON


def _surnamey(lw: str) -> bool:
    return lw in LAST or lw.endswith(_SURNAME_BROAD)


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
        # Shouted text ("CAN I SPEAK TO A REAL PERSON") is only a name when both parts are known names.
        a, b = lws[0], lws[-1]
        if len(run) >= 2 and a in FIRST and b in LAST and (_namey(a) or _namey(b)):
            return ("PERSON", start, end, 0.7)
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


def find_persons(text: str, lowered: str, has_upper: bool, quant: bool, fired: set[str] | None = None) -> list[Hit]:
    """``fired``: the prefilter's triggers for this text, or None (see :func:`is_word_problem`)."""
    hits: list[Hit] = []
    plain = ""  # _plain(lowered), made when the first candidate reaches _judge
    if not has_upper:
        # All-lower-case text ("follow up with patricia desrosiers") has no capitals to go by: a known first
        # name, a title, or any word right after a label is judged with the word after it, on the lists alone.
        words = list(_LOWER_WORD.finditer(text))
        lws = [m.group() for m in words]
        for i, lw in enumerate(lws):
            prev = lws[i - 1] if i else ""
            if (
                (lw in FIRST and len(lw) > 1)
                or lw in _TITLES
                or prev in _LABEL_LAST
                or prev in _PRONOUN_I
                or (i > 1 and (lws[i - 2], prev) in _LABEL_PAIRS)
            ):
                run = _runs(text, [(m.start(), m.end(), m.group()) for m in words[i : i + 2]])[0]
                plain = plain or _plain(lowered)
                hit = _judge(text, plain, run, quant, True)
                if hit is not None:
                    hits.append(hit)
        return hits
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
