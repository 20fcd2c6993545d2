"""Postal and street addresses, in the shapes they take across countries.

Nearly every address has a house number next to a word ("221B Baker Street", "Hauptstraße 5", "ul. Narewska
94", "P.O. Box 12", "APO AE 09012"). One scan finds a number next to a capitalised word (or, in all-lower-case
text, next to any word), and each such pair is kept when the words around it say "street": a street word or
ending, a unit (Apt., Suite), a postal shape ("City, ST 12345"), a building number on both sides, or an
address cue shortly before ("my address is", "located at", "deliver to").
"""

from __future__ import annotations

import re

from producer.pii_names import COMMON, UPPER

Hit = tuple[str, int, int, float]

# Street words, by where they may stand relative to the number/name pair.
_STREET_FULL = frozenset(
    str.split(
        "street avenue road boulevard drive lane way court place terrace circle parkway highway square trail "
        "crescent close grove gardens row mews walk heights plaza alley loop pike crossing path commons ridge "
        "route expressway freeway causeway wharf quay esplanade promenade embankment broadway tee tie gate vei "
        "vej gata gade weg laan straat ring"
    )
)
_STREET_ABBR = frozenset(str.split("st ave av rd blvd dr ln ct pl ter cir pkwy hwy sq trl cres gdns str rte"))
_UNIT = frozenset(
    str.split("box apt apartment suite ste flat unit po p.o. postfach apo fpo dpo psc usns uss usnv usnh usmv")
)
_PREFIX = frozenset(
    str.split(
        "rue via viale vicolo piazza corso calle avenida carrer rúa rua praça travessa ul ulica al plac trg "
        "ulitsa strada calea odos u utca út útja tér körút krt"
    )
)
# Street endings of compound words ("Hauptstraße", "Hammarvägen"): distinctive ones only, since "-ring" or
# "-tie" would also match "occurring" or "necktie". Short forms that stand alone are in _STREET_FULL.
_STREET_ENDINGS = tuple(
    str.split(
        "straße strasse str. weg gasse platz allee damm vej vejen gade vägen väg gatan gata veien vegen katu "
        "kuja polku utca útja laan straat plein gracht dreef stræti rinne puiestee iela gatve cesta ulica ulice "
        "sokak caddesi steig stieg"
    )
)
_CUE = re.compile(
    r"address(?:es)?\b|located at|live[sd]? (?:at|in|on)|living at|moved to|meet (?:me|us) at|"
    r"drops? (?:you|me) off at|deliver(?:ed|y)? (?:it |this )?to|sen[dt] (?:it |this |them )?to|"
    r"ship(?:ped)? to|mail(?:ed)? to|arrived at|return (?:it )?to|taxi to|offices? (?:is|are)|"
    r"headquarter|resid|postal|postcode|forward(?:ed)? to|staying at|pick (?:me |us )?up (?:at|from)|"
    r"enter on|corner of|the bus drops|it'?s in"
)
# A number and a capitalised word, in either order, on one line. Two separate scans: one alternation costs
# twice as much as both (the engine tries every branch at every position). The runs of digits, letters and
# blanks are possessive ({m,n}+): giving one back never helps, as the next item cannot match the digit, letter
# or blank returned, and the engine no longer tries each shorter run at every digit of a long number (a fifth
# of the scan on number-dense text). tests/unit/test_pii.py checks them against the plain greedy forms.
# A number starts with one digit written apart ([0-9][0-9]{0,5}+, not [0-9]{1,6}+): a pattern that opens on a
# character class lets ``re`` skip to the next digit in C, where one that opens on a repetition is tried at every
# position (twice the cost of the whole scan). tests/unit/test_pii.py checks both forms agree.
_LETTERS = "a-zß-öø-ÿā-žǎ-ɏḁ-ỿ"
_NUM_WORD = re.compile(
    rf"(?P<num>[0-9][0-9]{{0,5}}+[A-Za-z]?),?[ \t]{{1,4}}+(?:(?P<pre>[a-z]{{1,3}}+\.?)[ \t]{{1,4}}+)?"
    rf"(?P<w1>[{UPPER}][{_LETTERS}]{{0,40}}\.?)"
)
_WORD_NUM = re.compile(
    rf"(?P<w2>[{UPPER}][{_LETTERS}A-Z]{{0,40}}+\.?)[ \t]{{1,4}}+(?P<num2>[0-9]{{1,5}}+[A-Za-z]?)\b"
)
_NUM_WORD_LOWER = re.compile(r"(?P<num>[0-9][0-9]{0,5}+[a-z]?),?[ \t]++(?P<pre>)(?P<w1>[^\W\d_]{2,40}\.?)")
_WORD_NUM_LOWER = re.compile(r"(?<![^\W\d_])(?P<w2>[^\W\d_]{2,40}+\.?)[ \t]{1,4}+(?P<num2>[0-9]{1,5}+[a-z]?)\b")
_STATE_ZIP = re.compile(r",?[ \t\n]*[A-Z]{2}[ \t\n]+$")
_CORNER = re.compile(rf"corner of (?:the )?[{UPPER}\d]")
_LOWER_UNIT = re.compile(r"\b(?:apt\.?|suite|p\.?\s?o\.?\s?box|(?:apo|fpo|dpo)(?:\s+a[aep])?)\s*#?\s*\d+")


# For producer.prefilter: every pair above has a digit and a letter with only blanks (and a comma or a dot)
# between; in text with capitals, a capital letter (as _NUM_WORD / _WORD_NUM need), in text without, any letter
# ([^\W\d_] is a letter in any script). Units and corners have their words. For non-ASCII text a letter
# is widened to _LETTER_OR_WIDE, any character but an ASCII non-letter: a superset whatever Unicode version
# Hyperscan's tables follow, and it scans in half the time of Hyperscan's Unicode letter class.
_LETTER_OR_WIDE = r"[^\x00-\x40\x5b-\x60\x7b-\x7f]"
TRIGGERS = [
    ("addr_corner", "corner of", True),
    ("addr_upper", (r"[0-9][A-Za-z]?,?[ \t]{1,4}(?:[a-z]{1,3}\.?[ \t]{1,4})?[A-Z]",
                    r"[0-9][A-Za-z]?,?[ \t]{1,4}(?:[a-z]{1,3}\.?[ \t]{1,4})?\p{Lu}"), False),
    ("addr_upper", (r"[A-Z][A-Za-z]*\.?[ \t]{1,4}[0-9]", rf"\p{{Lu}}{_LETTER_OR_WIDE}*\.?[ \t]{{1,4}}[0-9]"), False),
    ("addr_lower", (r"[0-9][^\W\d_]?,?[ \t]+[^\W\d_]", rf"[0-9][^\W\d_]?,?[ \t]+{_LETTER_OR_WIDE}"), False),
    ("addr_lower", (r"[^\W\d_]\.?[ \t]+[0-9]", rf"{_LETTER_OR_WIDE}\.?[ \t]+[0-9]"), False),
    ("addr_unit", _LOWER_UNIT.pattern, True),
]


def _bare(word: str) -> str:
    return word.lower().rstrip(".,;:")


_STREET_CORE = frozenset(str.split("street avenue road boulevard lane st rd ave blvd ln"))


_LOWER_PREFIX = frozenset(str.split("rue calle rua ul ulica utca út útja tér avenida carrer praça piazza strada"))


def _street_name(word: str, has_upper: bool) -> bool:
    """The word next to the number is itself the street, unit or box: "Hauptstraße 5", "Box 12", "rue 9".
    Without capitals, "walk 10" or "square 3" are more likely plain words: only unmistakable ones count."""
    w = _bare(word)
    if w.endswith(_STREET_ENDINGS):
        return True
    if not has_upper:
        return w in _STREET_CORE or w in _LOWER_PREFIX
    return w in _STREET_FULL or w in _UNIT or w in _PREFIX


def _street_after(words: list[str], has_upper: bool) -> bool:
    """A street word within the next three words of the same sentence: "3968 Bay Street". Many street words
    are also plain words ("walk", "close", "way"), so they count only capitalised; in text without capitals
    only an unmistakable one counts, right after the name ("74678 midtvollen st.")."""
    if not has_upper:
        return bool(words) and _bare(words[0]) in _STREET_CORE
    for word in words:
        w = _bare(word)
        if word[:1].isupper() and (w in _STREET_FULL or w in _STREET_ABBR):
            return True
        if word[-1:] in ".?!" and w not in _STREET_ABBR:
            return False
    return False


#: A digit right after a blank: where a match of _WORD_NUM_LOWER has its number. Written digit first, so that re
#: skips to the next digit in C.
_BLANK_DIGIT = re.compile(r"[0-9](?<=[ \t][0-9])")
#: How far a match of _WORD_NUM_LOWER reaches either side of that digit: back over a 40-letter word, a dot and four
#: blanks; on over five digits and a letter, plus the character its closing \b reads.
_WORD_BEFORE, _NUMBER_AFTER = 45, 7


def _word_number_lower(text: str) -> list[re.Match[str]]:
    """``list(_WORD_NUM_LOWER.finditer(text))``, scanning only around the digits that follow a blank (in text
    without capitals the word may be any word, and a scan opening on a look-behind is tried at every position:
    the costliest step of the address finder). Every match lies in one of the merged windows and a window holds
    nothing else (each match's own digit is in it), so scanning the windows in order finds the same matches;
    tests/unit/test_pii.py checks it."""
    found: list[re.Match[str]] = []
    lo = hi = -1
    for m in _BLANK_DIGIT.finditer(text):
        d = m.start()
        if d - _WORD_BEFORE > hi:
            if hi >= 0:
                found += _WORD_NUM_LOWER.finditer(text, lo, hi)
            lo = max(0, d - _WORD_BEFORE)
        hi = d + _NUMBER_AFTER
    if hi >= 0:
        found += _WORD_NUM_LOWER.finditer(text, lo, hi)
    return found


def find_addresses(text: str, lowered: str, has_upper: bool, units: bool = True) -> list[Hit]:
    """``units``: whether text without capitals may hold a unit or box number ("apt 4", "p.o. box 12"): False when
    the prefilter's "addr_unit" trigger did not fire (the unit scan, opening on \b, is tried at every position)."""
    hits: list[Hit] = []
    if "corner of" in lowered:
        hits += [("STREET_ADDRESS", m.start(), m.end() + 20, 0.7) for m in _CORNER.finditer(text)]
    if has_upper:
        pairs = [*_NUM_WORD.finditer(text), *_WORD_NUM.finditer(text)]
    else:
        if units:
            hits += [("STREET_ADDRESS", m.start(), m.end(), 0.85) for m in _LOWER_UNIT.finditer(lowered)]
        pairs = [*_NUM_WORD_LOWER.finditer(text), *_word_number_lower(text)]
    for m in pairs:
        second = m.re is _WORD_NUM or m.re is _WORD_NUM_LOWER
        word = m.group("w2") if second else m.group("w1")
        start, end = m.start(), m.end()
        # The street word may sit before the name ("ul. Narewska", "rue de ...") or after it ("Bay Street").
        after = text[end : end + 30].split(None, 3)[:3]
        if second:
            previous = text[max(0, start - 8) : start].split()
            if text[start - 1 : start] == "-":  # "ul. Al-Masri 2": the street word precedes the whole compound
                previous = text[max(0, start - 24) : start].split()[:-1]
            before_word = previous[-1] if previous else ""
        else:
            before_word = m.group("pre") or ""
        prefix = _bare(before_word) in _PREFIX
        if _street_name(word, has_upper) or prefix or _street_after(after, has_upper):
            hits.append(("STREET_ADDRESS", start, end, 0.85))
            continue
        if second:
            # "ST 12345" after a city: a North American postal line.
            if (
                word.isupper()
                and len(word) == 2
                and len(m.group("num2")) == 5
                and _STATE_ZIP.search(text, max(0, start - 3), end - len(m.group("num2")))
            ):
                hits.append(("STREET_ADDRESS", start, end, 0.8))
                continue
            # A building number on both sides of a street name: "6750 Koskikatu 25", "30102 Kaevu 94".
            before = text[max(0, start - 8) : start].rstrip()
            if before[-1:].isdigit() and word.lower().rstrip(".") not in COMMON:
                hits.append(("STREET_ADDRESS", start, end, 0.6))
                continue
        if word.lower().rstrip(".") in COMMON:
            continue
        if not has_upper and not any(ch.isdigit() for ch in text[end : end + 12]):
            continue  # without capitals, a cue counts only for "number name number": "74678 midtvollen 130"
        if _CUE.search(lowered, max(0, start - 80), start):
            hits.append(("STREET_ADDRESS", start, end, 0.6))
    return hits
