"""Complexity score and expected output length: sanity a user would notice, and the measured GSM8K figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.complexity import complexity_score
from producer.output_length import expected_output_tokens

SIMPLE = [
    "What is the capital of France?",
    "Translate 'good morning' into Spanish.",
    "Who wrote Hamlet?",
    "Define photosynthesis.",
]
HARD = [
    "Implement a function to find the median of two sorted arrays of different sizes with O(log n) time "
    "complexity, explain the algorithm step by step and prove its correctness.",
    "Prove that there are infinitely many primes p such that p + 2 is not prime, and derive a bound on the "
    "probability that a random integer below n is prime.",
    "Design a distributed rate limiter in Python for a multi-region API gateway; analyze the trade-offs of "
    "token buckets versus sliding windows, including failure modes and consistency.",
]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=3000))
def test_score_is_always_in_unit_interval(text: str) -> None:
    assert 0.0 <= complexity_score(text) <= 1.0


@pytest.mark.parametrize("text", SIMPLE)
def test_simple_queries_route_to_the_small_model(text: str) -> None:
    assert complexity_score(text) < 0.3


@pytest.mark.parametrize("text", HARD)
def test_code_proofs_and_design_route_to_the_strongest_model(text: str) -> None:
    assert complexity_score(text) > 0.8


def test_more_steps_in_a_word_problem_score_higher() -> None:
    easy = "Tom has 3 apples and buys 2 more. How many apples does he have?"
    hard = (
        "Tom buys 3 crates of 24 apples at $0.45 each, sells 40% of them at a 25% markup, gives a third of the "
        "rest to his sister, and then buys twice as many pears as the apples he has left. If pears cost $0.30 "
        "more than apples, how much did he spend in total, and what was his profit?"
    )
    assert complexity_score(hard) > complexity_score(easy)


def test_empty_prompt_scores_zero() -> None:
    assert complexity_score("") == 0.0
    assert complexity_score("   \n") == 0.0


# --- expected output tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("Write an essay on climate policy in 3000 words.", 3500, 4500),
        ("Write a 10-page report on the EU energy market.", 5000, 8000),
        ("Write a novel chapter about a detective in Lisbon.", 2000, 8000),
        ("Write a blog post about hiking in Patagonia.", 2000, 3000),
        ("Summarise the story in three bullet points.", 50, 300),
        ("Summarise this in fewer than 100 words: the meeting covered budgets.", 50, 140),
        ("What is the capital of France? Answer in one word.", 1, 100),
        ("Implement a thread-safe LRU cache in Java.", 400, 1500),
        # Counts written out, with their multipliers.
        ("write me a three thousand word essay about dogs", 3500, 4500),
        ("Write a five-thousand-word essay on trade.", 6000, 7500),
        ("Write a 3k word essay on rivers.", 3500, 4500),
        ("Write two hundred and fifty words on cats.", 300, 400),
        ("Give me twenty-five hundred words about Rome.", 3000, 3600),
        ("In a word, what is it?", 1, 300),
    ],
)
def test_expected_tokens_read_explicit_asks_and_task_kind(text: str, low: int, high: int) -> None:
    assert low <= expected_output_tokens(text, None) <= high


def test_long_form_writing_lands_above_the_opus_threshold() -> None:
    for text in ("Write a short story about a lighthouse keeper.", "Write a 2500-word essay on memory."):
        assert expected_output_tokens(text, None) > 2000
    assert expected_output_tokens("Write a comprehensive report on battery chemistry in 5 pages.", None) > 2000


def test_max_tokens_caps_the_estimate() -> None:
    assert expected_output_tokens("Write a novel chapter about a storm.", 512) == 512
    assert expected_output_tokens("Write a novel chapter about a storm.", None) > 512
    assert expected_output_tokens("Hi", 10_000) < 10_000


# --- measured on the shared public data (skipped where ../shared/data is absent) ------------------------



def test_gsm8k_auc_beats_prompt_length(shared_data: Path) -> None:
    # The brief's target is 0.65 out of sample. The honest figure is bench/classify.py's 5-fold
    # cross-validation (model refitted per fold): about 0.62, above prompt length alone (0.60) and LiteLLM's
    # router (0.55), short of the target. In-sample (about 0.70) is optimistic: the shipped weights saw these
    # prompts. The assertions hold the level reached so that a regression fails; they do not claim 0.65.
    from bench._complexity_fit import auc
    from bench._datasets import gsm8k_labelled

    texts, labels = gsm8k_labelled()
    ours = auc([complexity_score(t) for t in texts], labels)
    by_length = auc([float(len(t)) for t in texts], labels)
    assert ours >= 0.68
    assert ours > by_length


def test_shipped_model_is_what_refit_writes(shared_data: Path) -> None:
    """producer/data/complexity_model.json is generated, never edited: refitting reproduces it."""
    pytest.importorskip("numpy")
    import json

    from bench._complexity_fit import _problems, fit_complexity
    from producer.complexity import MODEL_PATH

    shipped = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    fitted = fit_complexity(_problems())
    assert fitted["words"].keys() == shipped["words"].keys()
    assert all(abs(fitted["words"][w] - v) <= 2e-4 for w, v in shipped["words"].items())
    assert [d[0] for d in fitted["dense"]] == [d[0] for d in shipped["dense"]]
    for key in ("bias", "neutral_words", "centre", "scale"):
        assert abs(fitted[key] - shipped[key]) <= 2e-3, key


def test_word_problem_terms_apply_only_to_short_prompts_with_quantities() -> None:
    from producer.complexity import is_word_problem, normalise

    def check(text: str) -> bool:
        norm = normalise(text)
        return is_word_problem(text, norm, set(norm.split()))

    assert check("Tom has 3 apples and buys 2 more. How many apples does he have?")
    assert check("A baker sells half of her 40 loaves.")
    assert not check("Summarise the attached minutes.")
    assert not check("Tom has 3 apples and buys 2 more. " * 40)


def test_scores_spread_across_all_three_bands(shared_data: Path) -> None:
    from bench._datasets import gsm8k, mt_bench

    scores = [complexity_score(r["prompt"]) for r in gsm8k()]
    scores += [complexity_score(t) for q in mt_bench() for t in q["turns"]]
    shares = (
        sum(s < 0.3 for s in scores) / len(scores),
        sum(0.3 <= s <= 0.8 for s in scores) / len(scores),
        sum(s > 0.8 for s in scores) / len(scores),
    )
    assert all(share >= 0.1 for share in shares), shares


def test_gsm8k_answer_lengths_are_estimated_in_the_right_range(shared_data: Path) -> None:
    from bench._datasets import STRONG, gsm8k

    rows = gsm8k()
    estimates = sorted(expected_output_tokens(r["prompt"], None) for r in rows)
    real = sorted(len(r[STRONG + "_response"]) / 3.6 for r in rows)
    median_est, median_real = estimates[len(rows) // 2], real[len(rows) // 2]
    assert 0.67 <= median_est / median_real <= 1.5


def test_keyword_gates_never_hide_a_match() -> None:
    """The substring gates in front of the regexes must admit every text the regex would match."""
    from producer import output_length as c
    from switchyard.workload import generate

    samples = [j["prompt"].lower() for j in generate(400)] + [
        "write a 3000-word essay on canals", "draft a 10-page report", "implement a function in code",
        "briefly explain why the sky is blue", "how many apples", "please rewrite this email",
        "write the novel chapter now", "a comprehensive guide", "```python\nx=1\n```", "in 5 bullet points",
        "give me 10 examples", "answer in one word only", "in at most 200 words", "yes or no?",
    ]
    gates = [*zip(c._ASKS, c._ASK_KEYWORDS, strict=True), *zip(c._KINDS, c._KIND_KEYWORDS, strict=True),
             ((c._SHORT, 0), c._SHORT_KEYWORDS)]
    for (pattern, _), keywords in gates:
        for text in samples:
            if pattern.search(text):
                assert any(k in text for k in keywords), (pattern.pattern[:40], text[:80])


def _literal_prefixes(items: list, prefix: str = "") -> set[str]:
    """A literal that every match of a parsed pattern (``re._parser`` form) starts with, per alternative:
    leading ``\\b`` skipped, alternations forked, cut short at anything but a literal (shorter is still true)."""
    from re import _constants as sre

    for op, av in items:
        if op is sre.LITERAL:
            prefix += chr(av)
        elif op is sre.AT and not prefix:
            continue
        elif op is sre.BRANCH:
            return set().union(*(_literal_prefixes(list(alt), prefix) for alt in av[1]))
        elif op is sre.SUBPATTERN:
            return _literal_prefixes(list(av[3]), prefix)
        else:
            break
    return {prefix}


def test_kind_searches_start_at_a_literal_every_match_starts_with() -> None:
    """_search_from_lead skips the text before the first lead: no match of the pattern may start there."""
    from re import _parser

    from producer import output_length as c

    for (pattern, _), leads in zip(c._KINDS, c._KIND_LEADS, strict=True):
        for prefix in _literal_prefixes(list(_parser.parse(pattern.pattern))):
            assert prefix.startswith(leads), (pattern.pattern[:40], prefix)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["write ", "a ", "code", "xcode ", "how ", "to ", "report", "essay. ", "plan",
                                 "explain", "novel", "book", "long-form", "solve ", "```", "the ", "\n", "é"]),
                max_size=30).map("".join))
def test_search_from_lead_finds_the_same_match(text: str) -> None:
    from producer import output_length as c

    for (pattern, _), leads in zip(c._KINDS, c._KIND_LEADS, strict=True):
        fast, slow = c._search_from_lead(pattern, leads, text), pattern.search(text)
        assert (fast and fast.span()) == (slow and slow.span())


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["5 ", "3,000 ", "3k ", "a ", "an ", "in ", "about ", "me ", "three ", "thousand ",
                                 "hundred-", "and ", "words", "word", " pages", "page ",
                                 "chapters", "sections", "bullet points", "tips", "names", ". ", "? ", "-", ",",
                                 "x ", "\n", "(", ")", '"', "two ", "é", "_"]), max_size=30).map("".join))
def test_ask_searches_find_the_same_match(text: str) -> None:
    """_search_ask starts after the last character no ask can hold before its unit word: same match as a
    search from 0."""
    from producer import output_length as c

    for (pattern, _), units in zip(c._ASKS, c._ASK_KEYWORDS, strict=True):
        fast, slow = c._search_ask(pattern, units, text), pattern.search(text)
        assert (fast and (fast.span(), fast.groups())) == (slow and (slow.span(), slow.groups()))
