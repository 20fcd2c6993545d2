"""The offline PII/secrets detector: what it must flag, what it must leave alone, and its measured targets."""

from __future__ import annotations

import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from producer import pii_names, pii_patterns
from producer.pii import PIIFinding, PIIReport, find, scan
from tests.pii_strategies import HELDOUT_NEGATIVE, HELDOUT_POSITIVE, pii_values, texts_with_pii

POSITIVES = [
    # contact data
    ("EMAIL", "Send the slides to maria.gonzalez@example.com before noon."),
    ("EMAIL", "write to j.doe (at) example dot com"),
    ("PHONE", "Call me at (415) 555-0132 tomorrow."),
    ("PHONE", "My mobile is 07700 900123."),
    ("PHONE", "WhatsApp +91 98765 43210 when you land."),
    ("PHONE", "Office: +49 30 12345678"),
    ("PHONE", "They're not answering at 467 3395"),
    # financial and government identifiers
    ("CREDIT_CARD", "Charge 4111 1111 1111 1111 please."),
    ("CREDIT_CARD", "Mastercard 2-series 2223 0031 2200 3222 on file."),
    ("CREDIT_CARD", "Amex 3782 822463 10005"),
    ("CREDIT_CARD", "19 digits: 4000 0000 0000 0000 006"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 00"),
    ("IBAN", "pay GB82WEST12345698765432 today"),
    ("US_SSN", "SSN 536-90-4399"),
    ("BANK_ACCOUNT", "Account number 12345678, sort code 20-00-00."),
    ("ROUTING_NUMBER", "routing number 021000021"),
    ("PASSPORT", "My passport number is K4829173."),
    ("DRIVER_LICENSE", "driver's license D1234567"),
    ("MEDICAL_RECORD", "MRN: 00482913"),
    ("DATE_OF_BIRTH", "He was born on 14/07/1985."),
    ("DATE_OF_BIRTH", "Date of birth: July 14, 1985"),
    ("STREET_ADDRESS", "Ship it to 221B Baker Street, London."),
    ("STREET_ADDRESS", "Wohnt in der Hauptstraße 5, Berlin."),
    ("STREET_ADDRESS", "ul. Al-Masri 2"),  # a hyphenated name between the street word and the number
    ("STREET_ADDRESS", "P.O. Box 4412"),
    ("STREET_ADDRESS", "Springfield, IL 62704"),
    ("IP_ADDRESS", "Blocked 203.0.113.77 at the firewall."),
    ("IP_ADDRESS", "Client 2001:db8:85a3::8a2e:370:7334 timed out."),
    ("PERSON", "Patient: Maria Gonzalez"),
    ("PERSON", "Dear Mr. Okonkwo, thank you."),
    ("PERSON", "The contract was signed by Priya Ramasubramanian."),
    ("PERSON", "Why is Rebecca so impulsive?"),
    ("PERSON", "my name is maria gonzalez and i need help"),
    ("PERSON", "i think I should send the money to john smith tomorrow"),
    # secrets
    ("API_KEY", "OPENAI_API_KEY=sk-proj-a8F3kdP0qLm2ZxVb7YtR1nWcE5uHgJ9s"),
    ("API_KEY", "key: sk-ant-api03-Zx8k2LmQp4Rt7Vw9Yb1Nc3Df5Gh6Jk8Lm0Pq"),
    ("CLOUD_KEY", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
    ("TOKEN", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("TOKEN", "SLACK_TOKEN=xoxb-2048-1234567890-abcdefghijkl"),
    (
        "TOKEN",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    ),
    ("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow..."),
    ("PASSWORD_IN_URL", "DATABASE_URL=postgres://admin:s3cretPass@db.internal:5432/prod"),
    ("PASSWORD", "my password is hunter22"),
]

NEAR_MISSES = [
    # A checksum failure next to its telling word still counts: better kept self-hosted.
    ("CREDIT_CARD", "My credit card 4111 1111 1111 1112 was declined."),
    ("US_SSN", "SSN: 000-12-3456"),
    ("IBAN", "my IBAN is GB00WEST12345698765432"),
    ("ROUTING_NUMBER", "ABA routing 123456789"),
]

NEGATIVES = [
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast. How much does she make?",
    "Upgrade numpy to 1.26.4 and pandas to 2.2.1.",
    "Pin the image to v1.2.3.4 in the deployment.",
    "The meeting is on 2024-03-15 at 10:30.",
    "What is 3.14159 * 2.71828?",
    "Compute 1234567 + 7654321.",
    "Prove that the square root of 2 is irrational.",
    "Write a C++ program to find the nth Fibonacci number using recursion.",
    "Explain how TCP handshakes work.",
    "Sort these numbers: 14, 3, 27, 9, 81, 2.",
    "The population grew from 38,000 to 41,250 between 2010 and 2020.",
    "Mr. Tan sold his house for $400 000 and paid a 3% fee. How much did he keep?",
    "Localhost is 127.0.0.1 and the default port is 8080.",
    "Use a password manager and never reuse passwords.",
    "john drives for 3 hours at a speed of 60 mph. how far does he go?",
    "bernie's dogs walk 3 miles a day; how many miles in a week?",
]


@pytest.mark.parametrize(("kind", "text"), POSITIVES, ids=[f"{k}:{t[:30]}" for k, t in POSITIVES])
def test_each_kind_is_flagged_with_its_type(kind: str, text: str) -> None:
    report = scan(text)
    assert report.contains_pii
    assert kind in report.types


@pytest.mark.parametrize(("kind", "text"), NEAR_MISSES, ids=[k for k, _ in NEAR_MISSES])
def test_near_miss_in_a_sensitive_context_still_counts(kind: str, text: str) -> None:
    assert kind in scan(text).types


@pytest.mark.parametrize("text", NEGATIVES, ids=[t[:30] for t in NEGATIVES])
def test_ordinary_prompts_are_not_flagged(text: str) -> None:
    assert scan(text) == PIIReport(False, ())


@pytest.mark.parametrize(
    "text",
    ["A" * 20_000, "aB" * 10_000 + " x@y.com", "QUJD" * 12_000 + " mail a@b.co", "a:" * 10_000, "1 " * 10_000],
    ids=["caps-run", "letters-then-email", "base64-and-email", "colons", "digits"],
)
def test_long_unbroken_input_is_scanned_in_linear_time(text: str) -> None:
    # A base64 blob or padding in a prompt must not stall the router (quadratic regex retries would).
    started = time.perf_counter()
    scan(text)
    assert time.perf_counter() - started < 1.0


def test_valid_card_outscores_its_near_miss() -> None:
    valid = max(f.confidence for f in find("card 4111 1111 1111 1111"))
    near = max(f.confidence for f in find("card 4111 1111 1111 1112"))
    assert valid > near


def test_report_lists_sorted_unique_types_and_never_values() -> None:
    text = "Email bob@example.com or carol@example.com, or call (415) 555-0132."
    report = scan(text)
    assert report.types == ("EMAIL", "PHONE")
    assert "bob" not in repr(report)


def test_findings_point_at_the_value() -> None:
    text = "Reach me at bob@example.com today"
    (finding,) = [f for f in find(text) if f.type == "EMAIL"]
    assert text[finding.start : finding.end] == "bob@example.com"
    assert 0 < finding.confidence <= 1


def test_results_are_immutable_and_empty_text_is_clean() -> None:
    assert scan("") == PIIReport(False, ())
    assert find("") == []
    with pytest.raises(FrozenInstanceError):
        PIIFinding("EMAIL", 0, 1, 0.9).type = "PHONE"  # type: ignore[misc]


def test_hand_written_held_out_prompts() -> None:
    caught = sum(scan(t).contains_pii for t in HELDOUT_POSITIVE)
    flagged = [t for t in HELDOUT_NEGATIVE if scan(t).contains_pii]
    assert caught >= 0.9 * len(HELDOUT_POSITIVE)
    assert len(flagged) <= 2, flagged


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts_with_pii())
def test_generated_pii_in_random_text_is_always_flagged(case: tuple[str, str]) -> None:
    text, _kind = case
    assert scan(text).contains_pii, text


@settings(max_examples=100, deadline=None)
@given(pii_values())
def test_generated_pii_is_reported_under_its_own_type(pair: tuple[str, str]) -> None:
    kind, value = pair
    if kind == "BANK_ACCOUNT" and "sort code" not in value:
        # A bare "account number 12345678" may equally read as a phone; flagged either way.
        assert scan(value).contains_pii
        return
    assert kind in scan(value).types, value


# --- targets measured on the shared public data (skipped where ../shared/data is absent) ----------------



@pytest.fixture(scope="module")
def presidio_recall(shared_data: Path) -> dict[str, tuple[int, int]]:
    from bench._pii_figures import pii_recall

    return pii_recall()


def test_structured_pii_recall_target(presidio_recall: dict[str, tuple[int, int]]) -> None:
    caught, total = presidio_recall["contact/financial/government/IP"]
    assert caught / total >= 0.995


def test_person_and_address_recall_target(presidio_recall: dict[str, tuple[int, int]]) -> None:
    caught, total = presidio_recall["PERSON or STREET_ADDRESS"]
    assert caught / total >= 0.95


def test_false_positive_target_on_clean_prompts(shared_data: Path) -> None:
    from bench._pii_figures import false_positives

    flagged, total, _ = false_positives()
    assert flagged / total <= 0.05


_NAMEY_TEXT = st.lists(
    st.one_of(
        st.sampled_from([" ", "  ", "\t", "\n", "van", "der", "de", "la", ".", "’", "“", "—", "é", "\ud800", "İ", "K"]),
        st.text(max_size=6),
    ),
    max_size=20,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_NAMEY_TEXT)
def test_names_shortcuts_equal_their_plain_definitions(text: str) -> None:
    """_plain, _particles_only, _PUNCT_TABLE and _token_spans are faster forms of one-liners: they must answer
    exactly as those do."""
    assert pii_names._plain(text) == text.translate(pii_names._PUNCT)
    assert pii_names._particles_only(text) == all(p in pii_names._PARTICLES for p in text.split())
    assert text.translate(pii_patterns._PUNCT_TABLE) == text.translate(pii_patterns._PUNCT)
    spans = [(m.start(), m.end(), m.group()) for m in pii_names._CAP.finditer(text)]
    assert pii_names._token_spans(text, pii_names._CAP.findall(text)) == spans


_CONTEXT_WORDS = sorted({w for _, words, phrases in pii_patterns._CONTEXT for w in (*words, *phrases)})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*_CONTEXT_WORDS, ":", "#", "no.", "+", "(", "$"]), max_size=4).map(" ".join),
    st.from_regex(r"[1-9]\d{0,20}\.\d{1,20}", fullmatch=True),
)
def test_a_plain_decimal_is_never_reported_whatever_its_context(context: str, decimal: str) -> None:
    """_classify drops a plain decimal before reading its context: every later rule drops it too (the reason
    the shortcut is exact)."""
    text = f"{context} {decimal}"
    start = len(context) + 1
    assert not [f for f in find(text) if f.start <= start < f.end or start <= f.start < start + len(decimal)]


_ADDRESS_TEXT = st.lists(
    st.sampled_from(["1", "12", "123456", "1234567", "12a", " ", "  ", "     ", "\t", ",", ".", "Main", "St", "st",
                     "X", "ab", "abc", "Hauptstraße", "Ö", "é", "-", "\n", "A" * 41, "b" * 41]),
    max_size=25,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_ADDRESS_TEXT)
def test_possessive_address_scans_match_their_greedy_forms(text: str) -> None:
    """The address scans' possessive runs ({m,n}+) only skip backtracking that cannot succeed."""
    import re

    from producer import pii_address

    for pattern in (pii_address._NUM_WORD, pii_address._WORD_NUM, pii_address._NUM_WORD_LOWER,
                    pii_address._WORD_NUM_LOWER):
        greedy = re.compile(pattern.pattern.replace("}+", "}").replace("++", "+"))
        assert greedy.pattern != pattern.pattern
        fast = [(m.span(), m.groupdict()) for m in pattern.finditer(text)]
        assert fast == [(m.span(), m.groupdict()) for m in greedy.finditer(text)]


_DOB_TEXT = st.lists(
    st.sampled_from(["born", "b.", "dob", "d.o.b.", "d.ob", "date of birth", "birthdate", "birthday is", "birth",
                     "on", "is", ":", " ", "\n", "-", "1990-01-02", "02/03/1991", "3rd march 1990", "may 4, 1985",
                     "a", "ab", "é", "_", "9", "reborn"]),
    max_size=12,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_DOB_TEXT, _ADDRESS_TEXT)
def test_fast_start_scans_match_their_plain_forms(dob_text: str, address_text: str) -> None:
    """_DOB and the number-first address scans are written to open on a letter or a digit (so that ``re`` skips
    ahead in C): they must find exactly what their plain forms find."""
    import re

    from producer import pii_address

    plain_dob = re.compile(
        r"\b(?:born(?:\s+on|\s+in)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday(?:\s+is)?|b\.)"
        r"[\s:,-]*(?:is\s+|was\s+|on\s+)?(" + pii_patterns._DATE + r")"
    )
    found = [m.span(1) for m in pii_patterns._DOB.finditer(dob_text)]
    assert found == [m.span(1) for m in plain_dob.finditer(dob_text)]
    for pattern in (pii_address._NUM_WORD, pii_address._NUM_WORD_LOWER):
        plain = re.compile(pattern.pattern.replace("[0-9][0-9]{0,5}+", "[0-9]{1,6}+"))
        assert plain.pattern != pattern.pattern
        fast = [(m.span(), m.groupdict()) for m in pattern.finditer(address_text)]
        assert fast == [(m.span(), m.groupdict()) for m in plain.finditer(address_text)]


_LOWER_WORDS = st.one_of(
    st.sampled_from(["in", "can", "will", "my", "son", "name", "is", "i", "i'm", "dear", "dr", "mr.", "maria",
                     "gonzalez", "patricia", "desrosiers", "smith", "nguyen", "python", "van", "der", "o'brien",
                     "jean-luc", "the", "river", "called", "é", "ß", "İ", "'s", "7", "_", "a" * 41]),
    st.text(alphabet="abcxyz'-", min_size=1, max_size=5),
)
_LOWER_TEXT = st.lists(
    st.tuples(_LOWER_WORDS, st.sampled_from([" ", " ", " ", "  ", ". ", ", ", "\t", "\n", "-", "’", "\u00a0", ""])),
    max_size=12,
).map(lambda pairs: "".join(w + sep for w, sep in pairs))
# Words of 39 and 40 letters, a dot and four blanks before a number, and five digits and a letter before another:
# the bounds of a _WORD_NUM_LOWER match.
_LOWER_ADDRESS_TEXT = st.lists(
    st.sampled_from(["a" * 40, "a" * 39, "ab", "x", ".", " ", "    ", "\t", "1", "12345", "123456", "12345a", "b",
                     "-", "é"]),
    max_size=12,
).map("".join)


def _persons_lower_plain(text: str, quant: bool) -> list[tuple[str, int, int, float]]:
    """The lower-case name finder written as a plain loop over every word (what _find_persons_lower shortcuts)."""
    from producer.pii_name_lists import _LABEL_LAST, _LABEL_PAIRS, _PRONOUN_I, _TITLES, FIRST
    from producer.pii_name_tokens import _LOWER_WORD

    words = list(_LOWER_WORD.finditer(text))
    lws = [m.group() for m in words]
    hits = []
    for i, lw in enumerate(lws):
        prev = lws[i - 1] if i else ""
        if ((lw in FIRST and len(lw) > 1) or lw in _TITLES or prev in _LABEL_LAST or prev in _PRONOUN_I
                or (i > 1 and (lws[i - 2], prev) in _LABEL_PAIRS)):
            run = pii_names._runs(text, [(m.start(), m.end(), m.group()) for m in words[i : i + 2]])[0]
            hit = pii_names._judge(text, pii_names._plain(text.lower()), run, quant, True)
            if hit is not None:
                hits.append(hit)
    return hits


@settings(max_examples=1000, deadline=None)
@given(_LOWER_TEXT, st.booleans(), _LOWER_ADDRESS_TEXT)
@example("in smith", False, "x " + "a" * 40 + ".    1")  # the longest reach back from a number
@example("dear maria", True, "ab 12345ab 1 " + "a" * 39 + ". \t  12345a")  # and forward
def test_lower_case_shortcuts_equal_their_plain_definitions(text: str, quant: bool, address_text: str) -> None:
    """Text without capitals: the words found by one split, the candidates found by set lookups in C, and the
    address scan run only around digits must answer exactly as the plain scans and loop do."""
    from producer import pii_address
    from producer.pii_name_tokens import _LOWER_WORD, _lower_words

    words, bounds = _lower_words(text)
    assert [(bounds[2 * k], bounds[2 * k + 1], w) for k, w in enumerate(words)] == [
        (m.start(), m.end(), m.group()) for m in _LOWER_WORD.finditer(text)
    ]
    assert pii_names._find_persons_lower(text, text.lower(), quant) == _persons_lower_plain(text, quant)
    for t in (address_text, address_text.lower(), text):
        windowed = [(m.span(), m.groupdict()) for m in pii_address._word_number_lower(t)]
        assert windowed == [(m.span(), m.groupdict()) for m in pii_address._WORD_NUM_LOWER.finditer(t)]


@pytest.mark.parametrize(
    "text",
    [
        "Please email maria gonzalez at her home",
        "Write a 3000-word biography of maria gonzalez, my neighbour, including her medical history.",
        "Prove rigorously, step by step, that the tax owed by patricia desrosiers is minimised.",
        "Write a 3000-word report on james o'brien",
        "PLEASE EMAIL MARIA GONZALEZ AT HER HOME",
        "Ask my neighbour maria about it",
        "Send it to Dr. okafor today",
        "Patient: aroha ngata, admitted Tuesday.",
        "Hello, my name is aroha and I need help.",
    ],
)
def test_names_typed_in_lower_case_in_text_with_capitals_are_flagged(text: str) -> None:
    """A name typed in lower case (or shouted) in an otherwise ordinary prompt is still a person's name."""
    assert scan(text).types == ("PERSON",), text


@pytest.mark.parametrize(
    "text",
    ["The orchard bales gust.", "Note: the output must be json.", "What is the capital of France?",
     "I will smith the metal for the Museum.", "Example: foo bar"],
)
def test_lower_case_words_that_are_no_names_stay_clean(text: str) -> None:
    assert not scan(text).contains_pii, text
