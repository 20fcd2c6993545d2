"""producer.classify shares one lower-cased copy and one prefilter pass between the three classifiers: it must
answer exactly as the three plain calls do."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from producer import complexity, output_length, pii
from producer.classify import classify
from tests.pii_strategies import HELDOUT_NEGATIVE, HELDOUT_POSITIVE, texts_with_pii
from tests.unit.test_prefilter import _PIECES, _shared_texts


def _assert_same(text: str, max_tokens: int | None = None) -> None:
    plain = (
        pii.scan(text),
        complexity.complexity_score(text),
        output_length.expected_output_tokens(text, max_tokens),
    )
    assert classify(text, max_tokens) == plain, text[:200]


def test_the_two_sets_of_triggers_have_distinct_names() -> None:
    """The shared pass answers with one set of names: neither classifier may read the other's as its own."""
    ours = {name for name, _, _ in pii.TRIGGERS}
    theirs = {name for name, _, _ in output_length.CASE_BLIND_TRIGGERS}
    assert ours.isdisjoint(theirs)


def test_same_as_the_plain_calls_on_the_shared_data(shared_data: Path) -> None:
    texts = list(_shared_texts(shared_data))
    joined = "\n".join(texts)
    # Documents of every length around the output-length sample (3000 characters), where classify() changes path.
    sizes = [1024, 2999, 3000, 3001, 4096]
    texts += [joined[i : i + n] for n in sizes for i in range(0, min(len(joined), 200_000), 9973)]
    texts += [t.lower() for t in texts[:3000]] + [t.upper() for t in texts[:3000]]
    for text in [*texts, *HELDOUT_POSITIVE, *HELDOUT_NEGATIVE, ""]:
        _assert_same(text)
    _assert_same("write a 3000-word essay", 500)
    # Texts the prefilter cannot decide (a lone surrogate, a separator Hyperscan's \s lacks): every detector runs.
    for text in ("Write an essay, Dr. Sm\ud800ith", "password\x1cis hunter22: write a 500-word essay"):
        _assert_same(text)
        _assert_same(text + " filler" * 600)


@settings(max_examples=300, deadline=None)
@given(texts_with_pii())
def test_same_as_the_plain_calls_on_generated_pii(case: tuple[str, str]) -> None:
    _assert_same(case[1])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=30).map("".join))
def test_same_as_the_plain_calls_on_random_unicode(text: str) -> None:
    _assert_same(text)
    _assert_same(text.upper())


_GLUE = st.sampled_from(["", " ", "2", "_", "+", "<", ">", "@", "=", "&", "#", "|", "~", "^", "`", "…", "’", "-", "'",
                         "(", ":", ".", ",", "\n", "İ", "ß", "x"])
_LOWER_NAMES = st.sampled_from(["maria", "gonzalez", "o'brien", "james", "jean-luc", "okafor", "Maria", "mariachi"])
_NAME_TEXT = st.lists(
    st.tuples(st.sampled_from(["", "Please ", "dear ", "my neighbour ", "dr. ", "email "]), _GLUE, _LOWER_NAMES,
              st.sampled_from([" ", "  ", "-", ""]), _LOWER_NAMES, _GLUE),
    min_size=1, max_size=4,
).map(lambda parts: " ".join("".join(p) for p in parts))


@settings(max_examples=500, deadline=None)
@given(_NAME_TEXT)
def test_same_as_the_plain_calls_on_names_typed_in_lower_case(text: str) -> None:
    """The screen for lower-case names reads the score's words in classify() and its own split otherwise: both
    must find the same names, whatever punctuation stands next to them."""
    _assert_same("Write about " + text)
    _assert_same(text)
