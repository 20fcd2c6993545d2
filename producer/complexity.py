"""How hard a prompt is, and how long its answer will be: offline, cheap, no model.

``complexity_score`` feeds the router's thresholds (> 0.8 GPT-4 Turbo, < 0.3 Mistral 7B, else Llama 3 70B).
It adds two parts on a logit scale, then squashes:

* a *reasoning-load* part, a logistic model over counts (length, quantities, comparisons, multi-step cues,
  distinct named things) fitted on GSM8K: positive = Mixtral-8x7B wrong and GPT-4 right, negative = Mixtral
  right (``python bench/classify.py refit`` prints the weights; its 5-fold CV AUC is about 0.61, in-sample
  0.62, prompt length alone 0.60: the signal in a maths prompt's wording is real but weak);
* a *task-kind* part, set by hand: code, proofs and formal maths, multi-part analysis push up; short factual
  look-ups, rewrites and translations pull down. GSM8K has none of these cues, so they cannot be fitted there.

The logit is centred and scaled so that GSM8K spreads across the three bands instead of bunching in one.
"""

from __future__ import annotations

import math
import re

from switchyard.tokens import CHARS_PER_TOKEN

_NUMBER = re.compile(r"\d[\d.,]*")
_CAPWORD = re.compile(r"[A-Z][a-z]+")  # no leading \b: it would cost the regex its fast first-letter skip


def _vocab(words: str) -> frozenset[str]:
    """A word set that also matches the word with trailing punctuation, so str.split() output can be looked
    up as is (no per-word stripping in Python)."""
    return frozenset(w + p for w in words.split() for p in ("", ".", ",", "?", ":", ";", "!", ")", "'s"))


_NUMBER_WORDS = _vocab(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
    "thousand dozen twice half double triple third quarter fourth fifth"
)
_COMPARE_WORDS = _vocab(
    "more less fewer times older younger longer shorter faster slower percent average ratio profit remaining "
    "rest left then after"
)

# --- reasoning-load model (fitted on GSM8K by bench/classify.py refit; features standardised) ---------
#: (feature name, mean, standard deviation, weight). Regenerate with ``python bench/classify.py refit``.
_MODEL: tuple[tuple[str, float, float, float], ...] = (
    ("log_chars", 5.4014, 0.3857, 0.1425),
    ("log_numbers", 1.4083, 0.4030, 0.0603),
    ("log_number_words", 0.4512, 0.5031, 0.0695),
    ("distinct_caps", 3.6678, 1.5145, 0.0779),
    ("commas", 1.6188, 1.6058, 0.1449),
    ("compare", 0.9608, 0.9865, 0.1065),
)
_BIAS = -0.8094
#: Median of the fitted logit on GSM8K, and a scale that spreads GSM8K's deciles (-1.25 .. -0.33) over the
#: three bands: about a fifth below 0.3, a fifth above 0.8.
_CENTRE = -0.80
_SCALE = 0.25

# --- task-kind cues (hand-set logit offsets) -----------------------------------------------------------
#: (words, phrases, logit offset): the cue fires when any word, or any phrase (substring), is present.
_KIND: tuple[tuple[frozenset[str], float], ...] = (
    (
        _vocab(
            "def class function functions implement implementation algorithm algorithms compile debug bug "
            "regex sql python javascript java rust golang api program programs recursion recursive "
            "complexity code coding array arrays html css structures tree trees programming"
        ),
        1.6,
    ),
    (
        _vocab(
            "prove proof theorem lemma derive integral derivative eigenvalue eigenvalues matrix probability "
            "inequality equation equations irrational express integer integers remainder divisible prime "
            "geometry triangle circle"
        ),
        1.4,
    ),
    (
        _vocab(
            "analyze analyse analysis evaluate critique tradeoffs trade-offs justify implications "
            "architecture strategy plan detailed step-by-step contrast design"
        ),
        0.8,
    ),
    (_vocab("why explain explanation reason reasons reasoning happen cases"), 0.4),
    (_vocab("compose draft story essay poem blog script write"), 0.3),
    (_vocab("translate rephrase summarize summarise define convert extract grammar typos list"), -1.4),
)
# Symbols of code and formulas ("```", "c++", "O(n)", "f(x)", "x^2", "y = 4"), looked for only when one of
# their rare characters is present.
# Each alternative starts with a literal or a small character set, so the scan skips ahead quickly; the
# letter before an operator ("x^2", "y = 4") is checked in Python.
_CODE_OR_MATH = re.compile(r"```|c\+\+|o\([n1]|f\(x\)|\|\s*[a-z]\s*[+-]")
_OPERATOR = re.compile(r"[\^=<]\s*\d")
_SIMPLE_OPENERS = frozenset(["what", "who", "when", "where", "which", "what's", "who's"])


def _variable_before_operator(lowered: str) -> bool:
    return any(lowered[max(0, m.start() - 3) : m.start()].rstrip()[-1:].isalpha() for m in _OPERATOR.finditer(lowered))


def _present(text: str) -> set[str]:
    """The distinct lower-cased words of ``text`` (with trailing punctuation: see :func:`_vocab`)."""
    return set(text.lower().split())


def _features(text: str, present: set[str]) -> tuple[float, ...]:
    # Distinct-word counts via set intersection run in C; per-word loops in Python would cost more than the
    # rest of the score together.
    return (
        math.log1p(len(text)),
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(len(present & _NUMBER_WORDS)),
        float(len(set(_CAPWORD.findall(text)))),
        float(text.count(",")),
        float(len(present & _COMPARE_WORDS) + text.count("%")),
    )


def _clip(z: float) -> float:
    # Clipped at 2.5 sd: beyond GSM8K's range the fitted slope means nothing.
    return -2.5 if z < -2.5 else 2.5 if z > 2.5 else z


def reasoning_logit(text: str, present: set[str] | None = None) -> float:
    """The GSM8K-fitted linear predictor alone (what ``bench/classify.py`` cross-validates)."""
    _, mean, sd, weight = _MODEL[0]
    z = _BIAS + weight * _clip((math.log1p(len(text)) - mean) / sd)
    # The counts other than length describe arithmetic. Long documents are not word problems (a CSV full of
    # numbers is data, not arithmetic), and a prompt with fewer than two numbers is not one either: their
    # counts are held at GSM8K's mean (neutral) instead of reading as "very easy", and are not even computed.
    if len(text) >= 1500:
        return z
    features = _features(text, _present(text) if present is None else present)
    if features[1] < _LOG_TWO:
        return z
    for (_, mean, sd, weight), value in zip(_MODEL[1:], features[1:], strict=True):
        z += weight * _clip((value - mean) / sd)
    return z


_LOG_TWO = math.log1p(2)
#: Beyond this many characters only the head and tail are read: the ask sits there, and the score must stay
#: cheap on long documents (length itself still counts in full).
_SAMPLE = 3000


def complexity_score(text: str) -> float:
    """How demanding ``text`` is, in [0, 1]: > 0.8 wants the strongest model, < 0.3 a small one."""
    if not text or text.isspace():
        return 0.0
    sample = text if len(text) <= _SAMPLE else text[: _SAMPLE - 1000] + "\n" + text[-1000:]
    lowered = sample.lower()
    words = lowered.split()
    present = set(words)
    # (The length feature saturates at 2.5 sd, about 600 characters, so sampling does not change it.)
    z = (reasoning_logit(sample, present) - _CENTRE) / _SCALE
    pushed = False
    for cue_words, offset in _KIND:
        hits = len(cue_words & present)
        if hits:
            # Several cues of one kind ("prove ... prime ... probability") say more than one alone.
            z += offset * min(1.0 + 0.3 * (hits - 1), 2.0)
            pushed = pushed or offset > 0.5
    if (
        not pushed
        and ("`" in sample or "+" in sample or "(" in sample or "=" in sample or "^" in sample or "|" in sample)
        and (_CODE_OR_MATH.search(lowered) or _variable_before_operator(lowered))
    ):
        z += 1.5
        pushed = True
    # A question of a few words ("What is the capital of France?") is the simplest kind of job there is.
    if len(text) < 80 and text.count("?") <= 1 and not pushed:
        z -= 1.0
    elif len(text) < 120 and words[:1] and words[0] in _SIMPLE_OPENERS and not pushed:
        z -= 0.7
    return 1.0 / (1.0 + math.exp(-z))


# --- expected output length ----------------------------------------------------------------------------

_TOKENS_PER_WORD = 1.35
_COUNT = (
    r"\b(\d[\d,]*|(?:a|an)(?! \d)|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|"
    r"fifty|hundred)"
)
_WORDS_OF = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "fifty": 50,
    "hundred": 100,
}
#: Explicit size asks: (pattern with a count, words per unit).
_ASKS: tuple[tuple[re.Pattern[str], float], ...] = (
    # Words need a lead-in ("in 3000 words", "a 500-word essay"): "top-5 words" or "a word" are no size ask.
    (
        re.compile(
            r"(?:\b(?:in|of|about|around|approximately|roughly|exactly|least|write|than|under|over|"
            r"maximum|minimum|within|a|an)\s+)(\d[\d,]*|one|two|three|four|five|ten|twenty|fifty|hundred)"
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
_SHORT_KEYWORDS = ("one word", "one sentence", "briefly", "concise", "short answer", "yes or no", "only ")
_SHORT = re.compile(
    r"\bone (?:word|sentence)\b|\bbriefly\b|\bconcise(?:ly)?\b|\bshort answer\b|\byes or no\b|"
    r"\bonly (?:the|answer|output|return)"
)


def _count(token: str) -> float:
    token = token.replace(",", "")
    return float(token) if token.isdigit() else float(_WORDS_OF.get(token, 1))


def expected_output_tokens(text: str, max_tokens: int | None) -> int:
    """Expected completion tokens for ``text``: explicit asks first, else the task's kind; capped by
    ``max_tokens`` when given."""
    # As for the score, a long document is read at its head and tail, where the instructions sit.
    lowered = (text if len(text) <= _SAMPLE else text[: _SAMPLE - 1000] + "\n" + text[-1000:]).lower()
    expected: float | None = None
    for (pattern, words_per_unit), keywords in zip(_ASKS, _ASK_KEYWORDS, strict=True):
        # A substring test runs in C; the regex only where its unit word occurs at all.
        if not any(k in lowered for k in keywords):
            continue
        m = pattern.search(lowered)
        if m is not None:
            expected = _count(m.group(1)) * words_per_unit * _TOKENS_PER_WORD
            break
    limit = _LIMIT.search(lowered) if "word" in lowered else None
    if expected is None:
        for (pattern, tokens), keywords in zip(_KINDS, _KIND_KEYWORDS, strict=True):
            if any(k in lowered for k in keywords) and pattern.search(lowered):
                # Word problems: GPT-4's worked answers on GSM8K run ~48 + 0.23/char + 3.7/quantity tokens.
                estimate = 48 + 0.23 * len(lowered) + 3.7 * len(_NUMBER.findall(lowered))
                expected = float(tokens) if tokens > 0 else min(estimate, 1000.0)
                break
        else:
            # Plain questions: answers run roughly as long as a short paragraph, longer for longer prompts.
            expected = 120.0 + min(len(text) / CHARS_PER_TOKEN, 400.0) * 0.5
        if any(k in lowered for k in _SHORT_KEYWORDS) and _SHORT.search(lowered):
            expected = min(expected, 80.0)
    if limit is not None:
        expected = min(expected, _count(limit.group(1)) * _TOKENS_PER_WORD)
    tokens = max(1, int(expected))
    return min(tokens, max_tokens) if max_tokens is not None and max_tokens > 0 else tokens
