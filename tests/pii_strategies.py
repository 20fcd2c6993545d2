"""Hypothesis strategies for PII of every kind the detector knows, embedded in random text.

``pii_values()`` draws ``(type, value)`` pairs. For kinds that are only PII in context (a passport number is
just a number without the word "passport"), the value carries its label, as a person would write it:
"passport number X1234567", "Patient: Aroha Ngata". Names come from a hand-written list of many cultures, not
from the detector's gazetteer sources, so a property test exercises the general rules.

``texts_with_pii()`` draws ``(text, type)``: the value dropped at a random place into random filler.

``HELDOUT_POSITIVE`` / ``HELDOUT_NEGATIVE`` are hand-written prompts (names invented or taken from no list the
detector was built from) used as a held-out check next to the Faker-like presidio set.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

# --- building blocks -----------------------------------------------------------------------------------

_FIRST = str.split(
    "Aroha Oluwaseun Siobhán Thandiwe Keoni Priya Grzegorz Nguyen Khalid Ji-woo Ingrid Tomasz Mariana "
    "Dmitri Leilani Amara Rafael Yuki Bongani Eilidh Matthias Farida Santiago Hemi Zsófia Anneliese "
    "Kwame Ifeoma Lars"
)
_LAST = (
    "Ngata",
    "Adeyemi",
    "Ní Bhriain",
    "Dlamini",
    "Kahananui",
    "Ramasubramanian",
    "Brzęczyszczykiewicz",
    "Al-Masri",
    "Haraldsdóttir",
    "Kowalczyk",
    "Okonkwo",
    "Fitzgerald",
    "Hakimi",
    "Vasquez",
    "Tanaka",
    "Mbeki",
    "Lindqvist",
    "Oyelaran",
    "Petrović",
    "Szabó",
    "Castellanos",
    "Whitfield",
    "Nakamura",
)
_PERSON_LABELS = (
    "Patient: {}",
    "my name is {}",
    "Dear {},",
    "Mr. {}",
    "Dr. {}",
    "signed, {}",
    "Name: {}",
    "Attn: {}",
    "please call {} back",
    "cc: {}",
    "the account holder is {}",
)
_STREETS = str.split("Street Avenue Road Lane Drive Boulevard Court Place Way Terrace")
_FILLER = str.split(
    "the report please review and send it today we need a summary of meeting notes for team thanks "
    "update project status by friday with budget figures draft plan is ready to check quarterly "
    "numbers again"
)


def _luhn_complete(prefix: str, length: int, body: str) -> str:
    digits = (prefix + body)[: length - 1]
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return digits + str((10 - total % 10) % 10)


def _group(number: str, sep: str) -> str:
    if not sep:
        return number
    if len(number) == 15:  # Amex 4-6-5
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


_DIGITS = st.text(string.digits, min_size=20, max_size=20)
_ALNUM = string.ascii_letters + string.digits

# Networks: (prefixes, lengths). Mastercard 2-series, 15-digit Amex and 19-digit Visa/Discover included.
_NETWORKS = (
    (("4",), (13, 16, 19)),
    (str.split("51 52 53 54 55 2221 2500 2720"), (16,)),
    (("34", "37"), (15,)),
    (("6011", "644", "65"), (16, 19)),
    (("3528", "3589"), (16,)),
    (("36", "300", "305"), (14,)),
    (("62",), (16, 19)),
)


@st.composite
def credit_cards(draw: st.DrawFn) -> str:
    prefixes, lengths = draw(st.sampled_from(_NETWORKS))
    number = _luhn_complete(draw(st.sampled_from(prefixes)), draw(st.sampled_from(lengths)), draw(_DIGITS))
    return _group(number, draw(st.sampled_from(("", " ", "-"))))


_IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16, "CH": 21, "PL": 28}


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(_IBAN_LENGTHS)))
    n = _IBAN_LENGTHS[country] - 4
    if country in ("GB", "NL"):
        bban = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) + draw(
            st.text(string.digits, min_size=n - 4, max_size=n - 4)
        )
    elif country == "IT":
        bban = draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) + draw(
            st.text(string.digits, min_size=n - 1, max_size=n - 1)
        )
    else:
        bban = draw(st.text(string.digits, min_size=n, max_size=n))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    d = draw(st.text(string.digits, min_size=12, max_size=12))
    forms = (
        f"({2 + int(d[0]) % 8}{d[1:3]}) {d[3:6]}-{d[6:10]}",  # US
        f"{2 + int(d[0]) % 8}{d[1:3]}-{d[3:6]}-{d[6:10]}",  # US
        f"+1 {2 + int(d[0]) % 8}{d[1:3]} {d[3:6]} {d[6:10]}",  # E.164, North America
        f"07{d[:3]} {d[3:9]}",  # UK mobile
        f"+44 20 {d[:4]} {d[4:8]}",  # UK London
        f"+91 {6 + int(d[0]) % 4}{d[1:5]} {d[5:10]}",  # India
        f"{6 + int(d[0]) % 4}{d[1:5]} {d[5:10]}",  # India, national
        f"+49 30 {d[:8]}",  # Germany
        f"+33 1 {d[:2]} {d[2:4]} {d[4:6]} {d[6:8]}",  # France
        f"0{d[:1] if d[0] != '0' else '3'}{d[1:2]} {d[2:6]} {d[6:10]}",  # EU trunk-0 format
    )
    return draw(st.sampled_from(forms))


@st.composite
def ipv4s(draw: st.DrawFn) -> str:
    first = draw(st.integers(1, 223).filter(lambda a: a != 127))
    return ".".join(str(x) for x in (first, *draw(st.tuples(*[st.integers(0, 255)] * 3))))


@st.composite
def ipv6s(draw: st.DrawFn) -> str:
    groups = draw(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8))
    groups[0] = 0x2001
    return ":".join(f"{g:x}" for g in groups)


def _token(prefix: str, size: int, alphabet: str = _ALNUM) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size).map(lambda s: prefix + s)


@st.composite
def persons(draw: st.DrawFn) -> str:
    name = f"{draw(st.sampled_from(_FIRST))} {draw(st.sampled_from(_LAST))}"
    return draw(st.sampled_from(_PERSON_LABELS)).format(name)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    number = draw(st.integers(1, 9999))
    name = draw(st.sampled_from(_LAST)).split()[0]
    forms = (
        f"{number} {name} {draw(st.sampled_from(_STREETS))}",
        f"{name}straße {number % 300 + 1}",
        f"ul. {name} {number % 300 + 1}",
        f"P.O. Box {number}",
        f"{number} {name} Street, Apt. {number % 90 + 1}",
        f"my address is {name}vej {number % 300 + 1}",
    )
    return draw(st.sampled_from(forms))


@st.composite
def dates_of_birth(draw: st.DrawFn) -> str:
    y, m, d = draw(st.integers(1930, 2015)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
    months = str.split("January February March April May June July August September October November December")
    return draw(
        st.sampled_from(
            (
                f"born on {d:02d}/{m:02d}/{y}",
                f"DOB: {y}-{m:02d}-{d:02d}",
                f"date of birth: {months[m - 1]} {d}, {y}",
                f"born {d} {months[m - 1]} {y}",
            )
        )
    )


def _labelled(kind: str, labels: tuple[str, ...], values: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.tuples(st.sampled_from(labels), values).map(lambda lv: (kind, f"{lv[0]} {lv[1]}"))


def pii_values() -> st.SearchStrategy[tuple[str, str]]:
    """``(type, value)`` pairs covering every kind the detector reports."""
    digits = string.digits
    return st.one_of(
        st.tuples(
            st.just("EMAIL"),
            st.tuples(
                st.text(string.ascii_lowercase, min_size=1, max_size=10),
                st.sampled_from(("example.com", "mail.co.uk", "uni.edu")),
            ).map(lambda p: f"{p[0]}.x@{p[1]}"),
        ),
        st.tuples(st.just("PHONE"), phones()),
        st.tuples(st.just("CREDIT_CARD"), credit_cards()),
        st.tuples(st.just("IBAN"), ibans()),
        st.tuples(st.just("US_SSN"), ssns()),
        st.tuples(st.just("IP_ADDRESS"), st.one_of(ipv4s(), ipv6s())),
        _labelled(
            "BANK_ACCOUNT",
            ("account number", "acct no.", "bank account"),
            st.text(digits, min_size=8, max_size=12),
        ),
        _labelled(
            "ROUTING_NUMBER",
            ("routing number", "ABA"),
            st.sampled_from(("021000021", "011000015", "121000358", "026009593")),
        ),
        _labelled("PASSPORT", ("passport number", "passport no."), _token("X", 8, digits)),
        _labelled("DRIVER_LICENSE", ("driver's license", "driving licence number"), _token("D", 7, digits)),
        _labelled(
            "MEDICAL_RECORD",
            ("MRN:", "medical record number", "patient ID"),
            st.text(digits, min_size=6, max_size=9),
        ),
        st.tuples(st.just("DATE_OF_BIRTH"), dates_of_birth()),
        st.tuples(st.just("STREET_ADDRESS"), addresses()),
        st.tuples(st.just("PERSON"), persons()),
        st.tuples(
            st.just("API_KEY"),
            st.one_of(_token("sk-", 40), _token("sk-ant-api03-", 40), _token("sk_live_", 24)),
        ),
        st.tuples(st.just("CLOUD_KEY"), _token("AKIA", 16, string.ascii_uppercase + digits)),
        st.tuples(
            st.just("TOKEN"),
            st.one_of(
                _token("ghp_", 36),
                _token("xoxb-", 30, digits + "-"),
                _token("eyJhbGciOiJIUzI1NiJ9.eyJ", 20).map(lambda s: s + ".sig0123456"),
            ),
        ),
        st.tuples(
            st.just("PRIVATE_KEY"),
            st.sampled_from(
                (
                    "-----BEGIN RSA PRIVATE KEY-----",
                    "-----BEGIN OPENSSH PRIVATE KEY-----",
                    "-----BEGIN PRIVATE KEY-----",
                )
            ),
        ),
        st.tuples(
            st.just("PASSWORD_IN_URL"),
            st.tuples(
                st.sampled_from(("postgres", "mysql", "https", "redis")),
                st.text(string.ascii_lowercase, min_size=2, max_size=8),
                st.text(_ALNUM, min_size=4, max_size=12),
            ).map(lambda p: f"{p[0]}://{p[1]}:{p[2]}@db.internal:5432/app"),
        ),
    )


_FILLER_TEXT = st.lists(st.sampled_from(_FILLER), max_size=25).map(" ".join)


@st.composite
def texts_with_pii(draw: st.DrawFn) -> tuple[str, str]:
    """``(text, type)``: one PII value of ``type`` embedded in random filler words."""
    kind, value = draw(pii_values())
    before, after = draw(_FILLER_TEXT), draw(_FILLER_TEXT)
    end = draw(st.sampled_from(("", ".", "?", " thanks")))
    return f"{before} {value} {after}{end}".strip(), kind


# --- held-out hand-written prompts ---------------------------------------------------------------------

HELDOUT_POSITIVE: tuple[str, ...] = (
    "Please forward the lab results to Oluwaseun Adeyemi before Friday.",
    "Patient: Aroha Ngata, 54, presenting with chest pain since Tuesday.",
    "Our new hire, Thandiwe Dlamini, starts on Monday in the Durban office.",
    "Can you draft a reference letter for Grzegorz Kowalczyk? He worked with us for three years.",
    "Hi Siobhán, the invoice you asked about is attached.",
    "Summarise this complaint from Mrs. Haraldsdóttir about her delayed refund.",
    "Dear Mr. Okonkwo, thank you for your application.",
    "Translate into French: 'Keoni Kahananui will arrive at noon.'",
    "The contract was signed by Priya Ramasubramanian and witnessed by Lars Lindqvist.",
    "Write a birthday message for my colleague Ifeoma Oyelaran.",
    "Rewrite this bio: Dmitri Petrović is a violinist from Novi Sad who teaches at the conservatory.",
    "Ask Farida Hakimi whether the shipment cleared customs.",
    "My daughter Eilidh has a fever of 39 degrees, what should I do?",
    "Send it to Santiago Castellanos, 4821 Maple Grove Lane, Austin, TX 78745.",
    "Ship the order to Kirchweg 17, 8001 Zürich.",
    "Her new flat is at 27 Whitfield Road, Apt. 4, Leeds LS6 2QA.",
    "Reach me on +44 7700 900 461 after six.",
    "You can call the clinic at (415) 555-0132.",
    "My email is kwame.mbeki@example.org if anything changes.",
    "Card 4111 1111 1111 1111 exp 09/27 was declined, why?",
    "Please pay into IBAN DE89 3704 0044 0532 0130 00 by Friday.",
    "SSN 123-45-6789 is on the W-2 form, is that right?",
    "Our Postgres is at postgres://admin:s3cretPass@10.2.3.4:5432/prod - why is it slow?",
    "Here is my key sk-proj-a8F3kdP0qLm2ZxVb7YtR1nWcE5uHgJ9s, why does it return 401?",
    "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "The server log shows failed logins from 203.0.113.77 all night.",
    "She was born on 14/07/1985 in Porto.",
    "MRN: 00482913, admitted 3 March, discharge summary below.",
    "My passport number is K4829173, does it need a visa for Chile?",
    "Write a poem for Zsófia Szabó's retirement party.",
)
HELDOUT_NEGATIVE: tuple[str, ...] = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast. How many are left?",
    "Upgrade numpy to 1.26.4 and pandas to 2.2.1, then rerun the tests.",
    "The meeting is on 2024-03-15 at 10:30 in room 204.",
    "Explain the causes of the French Revolution in three paragraphs.",
    "Summarise the plot of Pride and Prejudice for a ten-year-old.",
    "What is 15% of 240?",
    "Set the connection timeout to 30000 ms and retry 5 times.",
    "Write a haiku about autumn leaves falling on a quiet river.",
    "Compare Python 3.11 and 3.12 performance for numeric code.",
    "Tom has 12 apples and gives 5 to Anna. How many apples does Tom have now?",
    "What is the capital of Australia?",
    "Sort the list [5, 3, 9, 1, 7] using merge sort and show each step.",
    "The rocket reached an altitude of 408 km before the second stage separated.",
    "Give me a recipe for lemon cake that serves 8 people.",
    "Why is the sky blue? Answer in two sentences.",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "List five famous paintings from the Renaissance.",
    "Refactor this function to use a dictionary instead of nested if statements.",
    "A train leaves at 3 pm travelling 80 km/h; another leaves at 4 pm at 100 km/h. When does it catch up?",
    "Describe the water cycle for a school presentation.",
)
