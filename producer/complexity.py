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
