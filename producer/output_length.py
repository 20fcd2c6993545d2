"""How long a job's answer will be, read from its prompt: offline and cheap.

The router compares this with the decision record's long-output threshold (> 2000 tokens goes to the
long-form model), and the budget reserves against it. Explicit asks ("in 3000 words", "a 10-page report")
win; else the task's kind (write a novel chapter, an essay, code, an explanation, a rewrite, a word problem);
``max_tokens`` caps the estimate.
"""

from __future__ import annotations

import re

from producer.prefilter import Gate
from switchyard.tokens import CHARS_PER_TOKEN

_NUMBER = re.compile(r"\d[\d.,]*")
#: Beyond this many characters only the head and tail are read: the ask sits there.
SAMPLE = 3000

_TOKENS_PER_WORD = 1.35
#: Counts written out: "three", "a" (a page), and the multipliers of "three thousand", "twenty-five hundred".
_WORDS_OF = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_MULTIPLIERS = {"hundred": 100, "thousand": 1000}
# Longest first, ties alphabetical: the pattern text must not depend on set order (hash seeds differ between
# processes), as the prefilter caches its compiled database under a hash of the patterns.
_NUMBER_WORD = "|".join(sorted((_WORDS_OF.keys() - {"a", "an"}) | _MULTIPLIERS.keys(), key=lambda w: (-len(w), w)))
# A count: digits ("3,000", "3k"), or number words joined by blanks, hyphens or "and" ("three thousand",
# "five-thousand", "two hundred and fifty"). No decimal point: _search_ask relies on no ask holding a ".".
_COUNT_CORE = rf"\d[\d,]*k?|(?:{_NUMBER_WORD})(?:[- ](?:and[- ])?(?:{_NUMBER_WORD}))*"
_COUNT = rf"\b({_COUNT_CORE}|(?:a|an)(?! \d)(?:[- ](?:{_NUMBER_WORD}))*)"
#: Explicit size asks: (pattern with a count, words per unit).
_ASKS: tuple[tuple[re.Pattern[str], float], ...] = (
    # Words need a lead-in ("in 3000 words", "a 500-word essay"): "top-5 words" or "a word" are no size ask.
    (
        re.compile(
            r"(?:\b(?:in|of|about|around|approximately|roughly|exactly|least|write|than|under|over|"
            r"maximum|minimum|within|me|a|an)\s+)(" + _COUNT_CORE + r")"
            r"[- ](?:\w+[- ]){0,2}words?\b"
        ),
        1.0,
    ),
    (re.compile(_COUNT + r"[- ](?:\w+[- ]){0,2}pages?\b"), 500.0),
    (re.compile(_COUNT + r"[- ](?:\w+[- ]){0,2}chapters?\b"), 4000.0),
    (re.compile(_COUNT + r"[- ](?:\w+[- ]){0,2}(?:paragraphs?|sections?)\b"), 120.0),
    (re.compile(_COUNT + r"[- ](?:\w+[- ]){0,2}(?:sentences?|bullet points?|bullets|lines|tweets?)\b"), 20.0),
    (
        re.compile(
            _COUNT + r"[- ](?:\w+[- ]){0,2}(?:examples|ideas|options|items|questions|tips|steps|points|"
            r"reasons|names|titles|headlines)\b"
        ),
        35.0,
    ),
)
#: Unit words each of _ASKS needs (same order): a cheap prefilter before the regex.
_ASK_KEYWORDS: tuple[tuple[str, ...], ...] = (
    ("word",),
    ("page",),
    ("chapter",),
    ("paragraph", "section"),
    ("sentence", "bullet", "lines", "tweet"),
    ("examples", "ideas", "options", "items", "questions", "tips", "steps", "points", "reasons", "names",
     "titles", "headlines"),
)
_LIMIT = re.compile(
    r"(?:fewer|less|no more|not more|under|at most|maximum of|max\.?|up to|within)\s+(?:than\s+)?"
    + _COUNT
    + r"[- ](?:\w+[- ]){0,1}words?\b"
)
#: Task kinds when no size is asked: (pattern, expected output tokens). First match wins.
_KINDS: tuple[tuple[re.Pattern[str], int], ...] = (
    (
        re.compile(
            r"\b(?:write|draft|compose|create)\b[^.?!]{0,40}\b(?:novel|novella|book|screenplay|chapter|thesis|"
            r"white ?paper)\b|\bnovel chapter|\bcomprehensive (?:guide|report)|\bin-depth report|\blong-?form"
        ),
        3500,
    ),
    # Long-form writing (an essay, a report, a story runs 1,500+ words): above 2,000 tokens, which routes to the
    # long-form model. Only when asked to write one: "summarise this report" is short.
    (
        re.compile(
            r"\b(?:write|draft|compose|create|produce|prepare|generate)\b[^.?!]{0,40}\b(?:essay|report|article|"
            r"blog post|story|speech|proposal|lesson plan|business plan|guide|tutorial|newsletter|case study)\b"
        ),
        2200,
    ),
    (re.compile(r"\bcover letter|\bscript\b|\bstory\b|\bessay\b|\breport\b|\barticle\b"), 900),
    (
        re.compile(
            r"```|\bimplement|\bwrite (?:a |an |the )?(?:\w+ )?(?:program|function|class|script|code|app|"
            r"website|query)|\bcode\b|\brefactor"
        ),
        700,
    ),
    (
        re.compile(
            r"\bexplain|\bdescribe|\bdiscuss|\banaly[sz]e|\bcompare|\bplan\b|\boutline|\bwhy\b|"
            r"\bhow (?:do|does|can|to)\b"
        ),
        500,
    ),
    (
        re.compile(
            r"\bemail\b|\bletter\b|\bpoem\b|\bsummar|\bparagraph\b|\bdescription\b|\brewrite|\brephrase|\btranslate"
        ),
        300,
    ),
    (
        re.compile(r"\bhow (?:many|much)|\bcalculate|\bwhat is the (?:total|sum|value|area|probability)|\bsolve\b"),
        -1,
    ),
)
#: Literal words each of _KINDS needs (same order): substring tests in C gate the slower regexes.
#: tests/unit/test_complexity.py checks that no match of a pattern lacks its keywords.
_KIND_KEYWORDS: tuple[tuple[str, ...], ...] = (
    ("novel", "book", "screenplay", "chapter", "thesis", "paper", "comprehensive", "in-depth", "long"),
    ("essay", "report", "article", "blog post", "story", "speech", "proposal", "lesson plan", "business plan",
     "guide", "tutorial", "newsletter", "case study"),
    ("cover letter", "script", "story", "essay", "report", "article"),
    ("```", "implement", "write", "code", "refactor"),
    ("explain", "describe", "discuss", "analy", "compare", "plan", "outline", "why", "how"),
    ("email", "letter", "poem", "summar", "paragraph", "description", "rewrite", "rephrase", "translate"),
    ("how many", "how much", "calculate", "what is the", "solve"),
)
#: What every match of each of _KINDS starts with (same order). Python's engine tries each alternative of these
#: patterns at every position (a leading ``\b`` hides their first letters from its skip-ahead), 10-30 us per KB;
#: a search starts instead at the first of these literals, found by ``str.find`` in C. Same match: none can start
#: earlier. tests/unit/test_complexity.py checks each pattern's alternatives against these.
_KIND_LEADS: tuple[tuple[str, ...], ...] = (
    ("write", "draft", "compose", "create", "novel chapter", "comprehensive ", "in-depth report", "long"),
    ("write", "draft", "compose", "create", "produce", "prepare", "generate"),
    ("cover letter", "script", "story", "essay", "report", "article"),
    ("```", "implement", "write ", "code", "refactor"),
    ("explain", "describe", "discuss", "analy", "compare", "plan", "outline", "why", "how "),
    ("email", "letter", "poem", "summar", "paragraph", "description", "rewrite", "rephrase", "translate"),
    ("how ", "calculate", "what is the ", "solve"),
)
_SHORT_KEYWORDS = ("one word", "one sentence", "briefly", "concise", "short answer", "yes or no", "only ")
_SHORT = re.compile(
    r"\bone (?:word|sentence)\b|\bbriefly\b|\bconcise(?:ly)?\b|\bshort answer\b|\byes or no\b|"
    r"\bonly (?:the|answer|output|return)"
)


def _count(token: str) -> float:
    """The number a count of _COUNT stands for: "3,000" 3000, "3k" 3000, "a" 1, "three thousand" 3000,
    "twenty-five hundred" 2500, "two hundred and fifty" 250."""
    token = token.replace(",", "")
    if token[:1].isdigit():
        return float(token[:-1]) * 1000 if token.endswith("k") else float(token)
    total = current = 0
    for word in token.replace("-", " ").split():
        if word in _MULTIPLIERS:
            current = (current or 1) * _MULTIPLIERS[word]
            if word == "thousand":
                total, current = total + current, 0
        else:
            current += _WORDS_OF.get(word, 0)
    return float(total + current or 1)


_ASK_NAMES = tuple(f"ask{i}" for i in range(len(_ASKS)))
_KIND_NAMES = tuple(f"kind{i}" for i in range(len(_KINDS)))


def _trigger(name: str, pattern: re.Pattern[str]) -> tuple[str, tuple[str, str], bool]:
    # For non-ASCII text \w becomes \S, a superset: Hyperscan takes five seconds to compile these patterns
    # with Unicode word classes inside their bounded repeats, and a third of a second without.
    return (name, (pattern.pattern, pattern.pattern.replace(r"\w", r"\S")), False)


# One Hyperscan pass over the lower-cased prompt says which of the patterns above can match at all (see
# producer.prefilter); the keyword tests stand in where it cannot decide.
_TRIGGERS = (
    [_trigger(name, p) for name, (p, _) in zip(_ASK_NAMES, _ASKS, strict=True)]
    + [_trigger(name, p) for name, (p, _) in zip(_KIND_NAMES, _KINDS, strict=True)]
    + [_trigger("limit", _LIMIT), _trigger("short", _SHORT)]
)
_GATE = Gate(_TRIGGERS)
#: The same patterns made case-blind, for a caller's prefilter pass over the text as written (see
#: :func:`expected_output_tokens`): they fire wherever the patterns fire on the lower-cased text, as no
#: pattern here holds a negated class of letters (which case-blind matching would narrow).
CASE_BLIND_TRIGGERS = [(name, pattern, True) for name, pattern, _ in _TRIGGERS]


def _may(fired: set[str] | None, name: str, keywords: tuple[str, ...], lowered: str) -> bool:
    """Whether the pattern called ``name`` can match: from the gate, else from its keywords (in C)."""
    if fired is not None:
        return name in fired
    return any(k in lowered for k in keywords)


def _search_from_lead(pattern: re.Pattern[str], leads: tuple[str, ...], lowered: str) -> re.Match[str] | None:
    """``pattern.search(lowered)``, started at the first occurrence of any of ``leads`` (every match starts with
    one). ``\\b`` still sees the character before the start position."""
    first = _first(leads, lowered)
    return pattern.search(lowered, first) if first >= 0 else None


def _first(words: tuple[str, ...], lowered: str) -> int:
    """Where the first of ``words`` occurs in ``lowered``, or -1."""
    first = -1
    for word in words:
        # Only an occurrence before the earliest so far matters: each find stops where that one starts (an
        # absent word would otherwise cost a walk over the whole text).
        at = lowered.find(word, 0, len(lowered) if first < 0 else first + len(word) - 1)
        if at >= 0:
            first = at
    return first


#: Characters no size ask holds before its unit word (a count, up to two words, and in _ASKS[0] a lead-in:
#: word characters, blanks, commas and hyphens only).
_NOT_IN_ASK = '.?!:;()[]"'


def _search_ask(pattern: re.Pattern[str], units: tuple[str, ...], lowered: str) -> re.Match[str] | None:
    """``pattern.search(lowered)`` for one of _ASKS, whose matches end in a unit word holding one of ``units``:
    every match starts after the last character of _NOT_IN_ASK before the first unit word, so the search
    starts there, not at 0 (these patterns cost 20-30 us per KB searched)."""
    first = _first(units, lowered)
    if first < 0:
        return None
    return pattern.search(lowered, max(lowered.rfind(c, 0, first) for c in _NOT_IN_ASK) + 1)


def expected_output_tokens(text: str, max_tokens: int | None, read: tuple[str, set[str] | None] | None = None) -> int:
    """Expected completion tokens for ``text``: explicit asks first, else the task's kind; capped by
    ``max_tokens`` when given. ``read``: ``text.lower()`` and a prefilter's answer for ``text`` from a database
    holding :data:`CASE_BLIND_TRIGGERS` (or None), when the caller has them."""
    # As for the score, a long document is read at its head and tail, where the instructions sit. The caller's
    # answer is for the whole text: a match across the seam of head and tail would escape it.
    if read is not None and len(text) <= SAMPLE:
        lowered, fired = read
        if fired is None:
            fired = _GATE.fired(lowered)
    else:
        lowered = (text if len(text) <= SAMPLE else text[: SAMPLE - 1000] + "\n" + text[-1000:]).lower()
        fired = _GATE.fired(lowered)
    expected: float | None = None
    # Most prompts fire no pattern of a group: its loop is skipped (each step would only find its name absent).
    asks = zip(_ASKS, _ASK_KEYWORDS, strict=True) if fired is None or not fired.isdisjoint(_ASK_NAMES) else ()
    kinds = zip(_KINDS, _KIND_KEYWORDS, strict=True) if fired is None or not fired.isdisjoint(_KIND_NAMES) else ()
    for i, ((pattern, words_per_unit), keywords) in enumerate(asks):
        if not _may(fired, _ASK_NAMES[i], keywords, lowered):
            continue
        m = _search_ask(pattern, keywords, lowered)
        if m is not None:
            expected = _count(m.group(1)) * words_per_unit * _TOKENS_PER_WORD
            break
    limit = _LIMIT.search(lowered) if _may(fired, "limit", ("word",), lowered) else None
    if expected is None:
        for i, ((pattern, tokens), keywords) in enumerate(kinds):
            if _may(fired, _KIND_NAMES[i], keywords, lowered) and _search_from_lead(pattern, _KIND_LEADS[i], lowered):
                if tokens > 0:
                    expected = float(tokens)
                else:
                    # Word problems: GPT-4's worked answers on GSM8K run ~48 + 0.23/char + 3.7/quantity tokens.
                    expected = min(48 + 0.23 * len(lowered) + 3.7 * len(_NUMBER.findall(lowered)), 1000.0)
                break
        else:
            # Plain questions: answers run roughly as long as a short paragraph, longer for longer prompts.
            expected = 120.0 + min(len(text) / CHARS_PER_TOKEN, 400.0) * 0.5
        if _may(fired, "short", _SHORT_KEYWORDS, lowered) and _SHORT.search(lowered):
            expected = min(expected, 80.0)
    if limit is not None:
        expected = min(expected, _count(limit.group(1)) * _TOKENS_PER_WORD)
    tokens = max(1, int(expected))
    return min(tokens, max_tokens) if max_tokens is not None and max_tokens > 0 else tokens
