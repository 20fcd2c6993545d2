"""The one-pass prefilter only skips work: gated classification must equal running every detector."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer import output_length, pii, pii_names, prefilter
from producer.prefilter import Gate
from switchyard.workload import generate
from tests.pii_strategies import HELDOUT_NEGATIVE, HELDOUT_POSITIVE, texts_with_pii


def _shared_texts(shared: Path) -> Iterator[str]:
    for row in json.loads((shared / "pii" / "presidio_synth_dataset_v2.json").read_text()):
        yield row["full_text"]
    for line in (shared / "complexity" / "mt_bench_questions.jsonl").read_text().splitlines():
        yield from json.loads(line)["turns"]
    import csv

    with (shared / "complexity" / "gsm8k_responses.csv").open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i % 4 == 0:  # the same prompt appears once per model; a quarter is plenty
                yield row["prompt"]


def _ungated_length(text: str, max_tokens: int | None) -> int:
    gate, output_length._GATE = output_length._GATE, Gate([])
    try:
        output_length._GATE._broken = True  # a gate that cannot decide: the keyword tests decide
        return output_length.expected_output_tokens(text, max_tokens)
    finally:
        output_length._GATE = gate


def _assert_same(text: str) -> None:
    assert pii.find(text) == pii.find(text, gated=False), text[:200]
    # The names detector's own shortcuts, compared directly (find() shows them only where they change a finding).
    lowered = text.lower()
    fired = pii._GATE.fired(text, lowered)
    assert pii_names.is_word_problem(text, lowered, fired) == pii_names.is_word_problem(text, lowered), text[:200]
    spans = [m.span() for m in pii_names._label_spans(text, lowered, fired)]
    assert spans == [m.span() for m in pii_names._label_spans(text, lowered)], text[:200]
    assert output_length.expected_output_tokens(text, None) == _ungated_length(text, None), text[:200]


def test_gate_is_compiled_here() -> None:
    """On this platform Hyperscan is present: the fast path, not the fallback, is what the other tests check."""
    assert pii._GATE.fired("call 555-0100 or mail a@b.co") >= {"numbers", "emails"}
    assert pii._GATE.fired("nothing to see here") == set()
    assert pii._GATE.fired("Grüße aus Köln, Ülmenweg 5") == {"addr_upper", "addr_lower", "digit"}  # Unicode database
    # Python's \s matches U+001C..U+001F, Hyperscan's does not; a lone surrogate has no UTF-8 form.
    assert pii._GATE.fired("password\x1cis hunter22") is None
    assert pii._GATE.fired("bad \ud800 text") is None


def test_kelvin_sign_is_read_lower_cased() -> None:
    """str.lower() turns U+212A into "k", so the phrase detector (which reads the lower-cased text) finds this
    key. The gate must fire for it: Hyperscan's case-blind Unicode matching folds the sign too, and the gate
    also scans the lower-cased text, so either alone keeps this passing."""
    text = "my api_\u212aey = abcdefghijklmnop1234 thanks"
    assert "API_KEY" in {f.type for f in pii.find(text)}
    assert pii.find(text) == pii.find(text, gated=False)


def test_digits_hyperscan_does_not_know_are_not_gated() -> None:
    """Python's \\d matches digits of scripts newer than Hyperscan's Unicode tables (U+11950, Dives Akuru): a
    phone number written in them must still be found, so the gate either sees a digit or declines to decide."""
    for c in range(0x110000):
        if chr(c).isdecimal():
            fired = pii._GATE.fired("phone " + chr(c))
            assert fired is None or "digit" in fired, hex(c)
            assert c < 0x10000 or c in prefilter._PLANE_1, hex(c)  # where _undecidable_unicode looks
    digits = "".join(map(chr, range(0x11950, 0x1195A)))  # 0-9 in Dives Akuru
    text = f"phone {digits[:3]} {digits[3:6]} {digits[6:]}"
    assert {f.type for f in pii.find(text)} == {"PHONE"}
    _assert_same(text)


def test_gated_equals_ungated_on_the_shared_data(shared_data: Path) -> None:
    texts = list(_shared_texts(shared_data))
    assert len(texts) > 1000
    joined = "\n".join(texts)
    # Long documents too: the 4 KB chunks mix names, numbers and questions.
    texts += [joined[i : i + 4096] for i in range(0, min(len(joined), 400_000), 4096)]
    for text in texts:
        _assert_same(text)


def test_gated_equals_ungated_on_held_out_and_the_demo_workload() -> None:
    for text in [*HELDOUT_POSITIVE, *HELDOUT_NEGATIVE, *(j["prompt"] for j in generate(300))]:
        _assert_same(text)


@settings(max_examples=300, deadline=None)
@given(texts_with_pii())
def test_gated_equals_ungated_on_generated_pii(case: tuple[str, str]) -> None:
    _, text = case
    _assert_same(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_gated_equals_ungated_on_random_ascii(text: str) -> None:
    _assert_same(text)


_PIECES = st.sampled_from(
    ["password", " is ", "Hauptstraße ", "5", "١٢٣٤٥", "\u00a0", "\u2003", "\u212a", "İ", "@", "née ", "Ülmenweg",
     "card 4111 1111 1111 1111", "ＡＢＣ", "born ", "é", "\n", "api_key=", "x" * 17, "Dr. Øyvind Ødegård", ":",
     "in 3000 words", "a 10-page", "write an essay", "five größere bullet points", "briefly", "how many", "٣٠٠٠",
     " pages", "in at most 50 words", "write a novel", "résumé ", "chapter"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=30).map("".join))
def test_gated_equals_ungated_on_random_unicode(text: str) -> None:
    _assert_same(text)


@pytest.mark.parametrize(
    "text",
    [
        "write a 3000-word essay on canals",
        "Draft a 10-page report on the Q3 numbers.",
        "answer in at most 200 words: why is the sky blue?",
        "In five bullet points, list ideas for a team offsite.",
        "Write the novel chapter now.",
        "briefly: yes or no?",
    ],
)
def test_size_asks_read_the_same_through_the_gate(text: str) -> None:
    assert output_length.expected_output_tokens(text, None) == _ungated_length(text, None)


def test_compiled_databases_are_cached_and_a_bad_cache_file_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    triggers = [("word", r"\bhello\b", True)]
    assert Gate(triggers).fired("HELLO there") == {"word"}
    (cached,) = (tmp_path / "switchyard").glob("prefilter-*.hsdb")
    good = cached.read_bytes()
    assert Gate(triggers).fired("well, hello") == {"word"}  # loaded, same answer
    cached.write_bytes(b"not a database")
    assert Gate(triggers).fired("hello") == {"word"}  # recompiled
    assert cached.read_bytes() == good
    assert Gate(triggers).fired("héllo wörld") == set()  # the Unicode database, cached beside it
    assert len(list((tmp_path / "switchyard").glob("prefilter-*.hsdb"))) == 2


def test_output_length_reads_non_ascii_text_through_its_unicode_database() -> None:
    assert output_length._GATE.fired("write a 3000-word essay about zürich") == {"ask0", "kind1", "kind2"}
    assert output_length.expected_output_tokens("Write a 3000-word essay about Zürich", None) == 4050
    assert output_length.expected_output_tokens("Écris: in five größere sentences, bitte", None) == 135


def test_lower_cased_text_is_scanned_for_the_case_blind_triggers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-ASCII text: a case-sensitive trigger fires on the text as written, a case-blind one on either form
    (the Kelvin sign folds to "k" only in str.lower), and no other database than the three is built."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    gate = Gate([("upper", "[A-Z]{3}", False), ("kelvin", "k=", True), ("digit", r"\d", False)])
    text = "ÉTÉ \u212a= ABC"
    assert gate.fired(text, text.lower()) == {"upper", "kelvin"}
    assert gate.fired("été abc 5", "été abc 5") == {"digit"}
    assert set(gate._dbs) == {"unicode", "lowered"}
    assert Gate([("upper", "[A-Z]", False)]).fired("É", "é") == set()  # no case-blind trigger: no third scan


def test_the_triggers_are_the_same_text_in_every_process() -> None:
    """The compiled database is cached under a hash of the patterns: a pattern built from a set in set order
    would differ between processes (hash seeds differ) and make every classifier process compile afresh."""
    import subprocess
    import sys

    code = ("import hashlib, producer.classify as c; "
            "print(hashlib.sha256(repr(c._GATE._triggers).encode()).hexdigest())")
    seen = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
        for seed in (1, 2, 3)
    }
    assert len(seen) == 1
