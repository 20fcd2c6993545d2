"""Pattern detectors for structured PII: contact data, financial and government identifiers, IP addresses.

Each detector returns ``(type, start, end, confidence)`` tuples; :mod:`producer.pii` wraps them. Recall comes
first (a miss sends personal data to a commercial API, a false alarm only keeps a job on a self-hosted model),
so checksums *raise* confidence but a near-miss next to a telling word ("card", "IBAN", "SSN") is still
reported.

Speed: every number-shaped identifier (phone, card, SSN, IBAN, account, passport, licence, record number)
has at least five digits, and an IPv4 address at least four with dots, so one scan finds such digit runs and
everything else is decided in Python on those few candidates, reading only the 50 characters before each.
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers
from stdnum import luhn
from stdnum.us import rtn

Hit = tuple[str, int, int, float]

# --- email ---------------------------------------------------------------------------------------------

# Matched outwards from each "@" with bounded lengths (local part <= 64, domain <= 255, as RFC 5321 allows):
# an unanchored pattern would retry at every character of a long token (a base64 blob) and go quadratic.
_EMAIL_LOCAL = re.compile(r"[\w.+%-]{1,64}$")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
# Obfuscated forms people type to dodge scrapers: "jane dot doe at example dot com", "jane(at)example.com".
_EMAIL_OBF = re.compile(
    r"\b[\w.+-]{1,64}\s?(?:\(at\)|\[at\]|\sat\s)\s?[\w-]{1,63}\s?(?:\.|\(dot\)|\[dot\]|\sdot\s)\s?"
    r"(?:com|org|net|edu|gov|io|co|de|uk|fr)\b",
    re.IGNORECASE,
)


def find_emails(text: str, lowered: str) -> list[Hit]:
    hits: list[Hit] = []
    at = text.find("@")
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1, at + 256)
        if local is not None and domain is not None:
            hits.append(("EMAIL", local.start(), domain.end(), 0.95))
        at = text.find("@", at + 1)
    if "(at)" in lowered or "[at]" in lowered or " dot " in lowered:
        hits += [("EMAIL", m.start(), m.end(), 0.6) for m in _EMAIL_OBF.finditer(text)]
    return hits


# --- numbers -------------------------------------------------------------------------------------------

# Five or more digits, glued by phone/card punctuation (never a line break or a comma).
_LONG_NUM = re.compile(r"\d(?:[ \t./()-]{0,2}\d){3,}")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_US_PHONE = re.compile(r"(?:1[ .-]?)?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]\d{4}")
_SSN_FORM = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?)\s?\d{1,5}")
_ALNUM_TAIL = re.compile(r"[A-Za-z0-9]*")
_VERSION = re.compile(r"\bv(?:er(?:sion)?)?\.?\s*$")
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){10,30}")
# The start of an IBAN written in groups, ending where a digit run begins: "GB57 LTTB " before "2895 5866".
_IBAN_HEAD = re.compile(r"[A-Za-z]{2}\d{2}")


def _iban_ok(value: str) -> bool:
    """ISO 13616 mod-97 check alone: a national-format slip is still someone's account number."""
    if not 15 <= len(value) <= 34:
        return False
    rearranged = value[4:] + value[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_at(text: str, lowered: str, start: int) -> Hit | None:
    m = _IBAN.match(text, start)
    if m is None or sum(ch.isdigit() for ch in m.group()) < 8:
        return None
    positions = [i for i in range(start, m.end()) if text[i] != " "]
    value = "".join(text[i] for i in positions).upper()
    # The regex may run on into a following word or number: keep the longest prefix that checks out.
    for length in range(len(value), 14, -1):
        if _iban_ok(value[:length]):
            return ("IBAN", start, positions[length - 1] + 1, 0.95)
    ctx = _context(lowered, start)
    if "IBAN" in ctx or "ACCOUNT" in ctx:
        return ("IBAN", start, m.end(), 0.6)
    return None


# What the words just before a number say it is: label -> (single words, phrases). Sets and substring tests
# on a 50-character window, not one big regex alternation (which costs a microsecond per character).
_PUNCT = str.maketrans({c: " " for c in "\"'.,;:!?()[]{}<>*/\\|`~@#$%^&=_-“”‘’"})
# The same mapping as a string indexed by code point (up to the last mark, U+2019): str.translate with a dict
# raises and catches a KeyError for every distinct unmapped character, about twice the cost. Characters past
# the end are left alone, as the dict leaves them.
_PUNCT_TABLE = "".join(_PUNCT.get(c, chr(c)) for c in range(max(_PUNCT) + 1))
_CONTEXT: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    ("SSN", frozenset(["ssn", "ssns", "itin"]), ("social security", "social sec", "taxpayer id")),
    ("ROUTING", frozenset(["routing", "aba", "rtn", "bsb"]), ("transit n", "sort code")),
    ("IBAN", frozenset(["iban"]), ()),
    ("PASSPORT", frozenset(["passport"]), ()),
    ("LICENSE", frozenset(["license", "licence", "dl", "driving", "driver", "driver's"]), ("licen",)),
    (
        "MEDICAL",
        frozenset(["mrn", "medical", "patient", "chart", "nhs", "medicare", "medicaid"]),
        (
            "health card",
            "health insurance",
            "health plan",
            "member id",
            "insurance id",
            "insurance number",
            "insurance no",
        ),
    ),
    (
        "NATIONAL",
        frozenset(str.split("aadhaar aadhar pan tfn sin personnummer bsn nif nie dni cpf curp identity")),
        (
            "national id",
            "national insurance",
            "ni number",
            "tax id",
            "tax file",
            "id card",
            "id number",
            "id no",
        ),
    ),
    (
        "CARD",
        frozenset(
            str.split(
                "card cards cc visa mastercard amex discover diners jcb maestro credit debit payment charge billing cvv"
            )
        ),
        ("master card", "american express", "expir"),
    ),
    (
        "ACCOUNT",
        frozenset(str.split("account acct a/c acc bank deposit checking savings wire transfer")),
        ("account",),
    ),
    (
        "PHONE",
        frozenset(
            str.split(
                "phone tel mobile cell call fax desk office whatsapp sms dial answering ring mob ph "
                "landline telephone contact message messages registered text texts"
            )
        ),
        ("text me", "reach me", "messages to", "messages at", "message to", "phone", "mobile"),
    ),
    ("BIRTH", frozenset(["born", "birth", "dob", "birthday"]), ("d.o.b", "birth")),
)
_KIND_OF = {
    "SSN": "US_SSN",
    "ROUTING": "ROUTING_NUMBER",
    "PASSPORT": "PASSPORT",
    "LICENSE": "DRIVER_LICENSE",
    "MEDICAL": "MEDICAL_RECORD",
    "NATIONAL": "NATIONAL_ID",
    "ACCOUNT": "BANK_ACCOUNT",
}


def _ssn_valid(d: str) -> bool:
    """SSA area/group/serial rules: no 000, 666 or 9xx area, no 00 group, no 0000 serial."""
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_LABEL_OF_WORD = {word: label for label, single, _ in _CONTEXT for word in single}
_PHRASES = tuple((phrase, label) for label, _, phrases in _CONTEXT for phrase in phrases)


def _context(lowered: str, start: int, before: int = 50) -> set[str]:
    window = lowered[max(0, start - before) : start]
    labels = {_LABEL_OF_WORD[w] for w in window.translate(_PUNCT_TABLE).split() if w in _LABEL_OF_WORD}
    labels.update(label for phrase, label in _PHRASES if phrase in window)
    return labels


def _classify(text: str, lowered: str, s: int, e: int) -> Hit | None:
    raw = text[s:e].rstrip(" .-/(")
    e = s + len(raw)
    d = "".join(ch for ch in raw if ch.isdigit())
    n = len(d)
    prev = text[s - 1] if s else " "
    # An IBAN's country code and check digits sit up to 14 characters before its long digit run.
    for head in _IBAN_HEAD.finditer(text, max(0, s - 14), s + 2):
        if head.start() == 0 or not text[head.start() - 1].isalnum():
            iban = _iban_at(text, lowered, head.start())
            if iban is not None:
                return iban
    # Digits glued to letters: an IBAN, a licence or passport number with a letter prefix, or a secret (those
    # are found by the secrets detector).
    if prev.isalnum() and prev.isascii():
        token_start = s
        while token_start > 0 and text[token_start - 1].isalnum() and text[token_start - 1].isascii():
            token_start -= 1
        ctx = _context(lowered, token_start)
        for label in ("PASSPORT", "LICENSE", "MEDICAL", "NATIONAL", "ACCOUNT"):
            if label in ctx:
                end = _ALNUM_TAIL.match(text, e).end()
                return (_KIND_OF[label], token_start, end, 0.8)
        return None
    if n < 5 and raw.count(".") != 3:
        return None  # four digits or fewer: a year, a count, a price (IPv4 "1.0.0.1" excepted)
    if raw.count(".") == 1 and raw.replace(".", "").isdigit():
        # A plain decimal ("150.02") is dropped below whatever its context says (it is no date nor IPv4):
        # dropped before the context is read, the costliest step, as tables of figures hold dozens.
        return None
    if prev in "+(":
        s -= 1
    ext = _EXTENSION.match(text, e)
    if ext is not None:
        e = ext.end()
    if _IPV4.fullmatch(raw):
        if raw.startswith(("127.", "0.")) or _VERSION.search(lowered, max(0, s - 10), s):
            return None  # loopback/unspecified identify no one; "v1.2.3.4" is a version
        return ("IP_ADDRESS", s, e, 0.9)
    ctx = _context(lowered, s)
    if "BIRTH" in ctx and _DATE_LIKE.fullmatch(raw):
        return ("DATE_OF_BIRTH", s, e, 0.85)
    if n < 6 and not (ctx & {"PASSPORT", "LICENSE", "MEDICAL", "NATIONAL", "ACCOUNT"}):
        return None
    if _DATE_LIKE.fullmatch(raw) or (raw.count(".") == 1 and raw.replace(".", "").isdigit()):
        return None  # dates and plain decimals are the bulk of long numbers in ordinary prompts
    if _SSN_FORM.fullmatch(raw) or (n == 9 and "SSN" in ctx):
        valid = _ssn_valid(d)
        if valid or "SSN" in ctx or "PHONE" not in ctx:
            return ("US_SSN", s, e, 0.85 if valid else 0.6 if "SSN" in ctx else 0.4)
    if _NINO.fullmatch(text, max(0, s - 3), min(len(text), e + 2)):
        return ("NATIONAL_ID", s - 3, e + 2, 0.7)
    for label in ("ROUTING", "PASSPORT", "LICENSE", "MEDICAL", "NATIONAL"):
        if label in ctx:
            if label == "ROUTING":
                return ("ROUTING_NUMBER", s, e, 0.9 if n == 9 and rtn.is_valid(d) else 0.6)
            return (_KIND_OF[label], s, e, 0.8)
    # Every card network's numbers start 1-6 (JCB 1800/2131, Mastercard 2-series, Amex 34/37, Visa 4, ...).
    if 12 <= n <= 19 and all(ch in " -" for ch in raw if not ch.isdigit()):
        if n >= 13 and d[0] in "123456" and luhn.is_valid(d):
            return ("CREDIT_CARD", s, e, 0.95)
        if "CARD" in ctx:
            return ("CREDIT_CARD", s, e, 0.6)
    if "PHONE" in ctx and 7 <= n <= 15:
        return ("PHONE", s, e, 0.8)
    if "ACCOUNT" in ctx and n <= 20:
        return ("BANK_ACCOUNT", s, e, 0.7)
    compact = raw.isdigit()
    if (text[s] == "+" or (raw.startswith("00") and not compact)) and 8 <= n <= 15:
        try:
            ok = phonenumbers.is_possible_number(phonenumbers.parse("+" + d.removeprefix("00"), None))
        except phonenumbers.NumberParseException:
            ok = False
        return ("PHONE", s, e, 0.9 if ok else 0.6)
    if not compact and _US_PHONE.fullmatch(raw.lstrip("(")):
        return ("PHONE", s, e, 0.85)
    # National formats written in groups with a trunk 0 (UK 07700 900123, FR 01.84.17.61.18) and Indian
    # mobiles (98765 43210).
    if not compact and 9 <= n <= 13 and (d[0] == "0" or (n == 10 and d[0] in "6789")):
        return ("PHONE", s, e, 0.7)
    return None


# For producer.prefilter: what each detector here needs before it can find anything (see find_*).
TRIGGERS = [
    ("emails", "@", False),
    ("emails", r"\(at\)|\[at\]| dot ", True),
    # find_numbers reads only digit runs of five characters or more: five digits, or four with a separator
    # (a bare "2019" is a year, and most prose's only number).
    ("numbers", r"\d(?:[ \t./()-]{0,2}\d){4,}", False),
    ("numbers", r"\d[ \t./()-]{1,2}\d[ \t./()-]{0,2}\d[ \t./()-]{0,2}\d", False),
    ("numbers", r"\d[ \t./()-]{0,2}\d[ \t./()-]{1,2}\d[ \t./()-]{0,2}\d", False),
    ("numbers", r"\d[ \t./()-]{0,2}\d[ \t./()-]{0,2}\d[ \t./()-]{1,2}\d", False),
    ("dob", r"born|birth|dob|d\.o\.b", True),
    ("ipv6", "::", False),
    ("ipv6", ":(?:[^:]*:){4}", False),
]


def find_numbers(text: str, lowered: str) -> list[Hit]:
    hits: list[Hit] = []
    for m in _LONG_NUM.finditer(text):
        if m.end() - m.start() < 5:
            continue  # "2019", "1200": four digits are never an identifier
        hit = _classify(text, lowered, m.start(), m.end())
        if hit is not None:
            hits.append(hit)
    return hits


# --- dates of birth written with month names -----------------------------------------------------------

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    + _MONTH
    + r",?\s+\d{2,4}|"
    + _MONTH
    + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4})"
)
# "born", "d.o.b", "date of birth", "birthdate", "birthday", "b." after a word boundary, written as a b or a d
# first and the boundary after it ((?<!\w.): no word character before that letter): a pattern that opens on
# literal letters lets ``re`` skip to the next b or d in C, where one that opens on \b is tried at every
# position (2.5 times slower). tests/unit/test_pii.py checks it against the plain form.
_DOB = re.compile(
    r"(?:b(?<!\w.)(?:orn(?:\s+on|\s+in)?|irth\s*date|irthday(?:\s+is)?|\.)|d(?<!\w.)(?:\.?o\.?b\.?|ate\s+of\s+birth))"
    r"[\s:,-]*(?:is\s+|was\s+|on\s+)?(" + _DATE + r")"
)


def find_dob(text: str, lowered: str) -> list[Hit]:
    if "born" not in lowered and "birth" not in lowered and "dob" not in lowered and "d.o.b" not in lowered:
        return []
    return [("DATE_OF_BIRTH", m.start(1), m.end(1), 0.85) for m in _DOB.finditer(lowered)]


# --- IPv6 ----------------------------------------------------------------------------------------------

_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


def find_ipv6(text: str, lowered: str) -> list[Hit]:
    """IPv6 addresses, found outwards from each colon (a regex would try every position of the text)."""
    if "::" not in text and text.count(":") < 5:
        return []
    hits: list[Hit] = []
    n = len(text)
    pos = text.find(":")
    while pos != -1:
        start = pos
        while start > 0 and pos - start < 39 and text[start - 1] in _HEX_OR_COLON:
            start -= 1
        end = pos
        while end < n and end - start < 39 and text[end] in _HEX_OR_COLON:
            end += 1
        candidate = text[start:end]
        glued = (start and (text[start - 1].isalnum() or text[start - 1] in "._")) or (end < n and text[end].isalnum())
        if candidate.count(":") >= 2 and not glued:
            try:
                addr = ipaddress.IPv6Address(candidate)
            except ValueError:
                addr = None
            if addr is not None and not (addr.is_loopback or addr.is_unspecified):
                hits.append(("IP_ADDRESS", start, end, 0.9))
        pos = text.find(":", max(end, pos + 1))
    return hits
