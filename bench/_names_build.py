"""The names gazetteer (producer/data/names.json) behind ``bench/classify.py build-names`` and ``ablate-faker``.
Dev-only: needs faker, names, zxcvbn and spacy-lookups-data installed (pyproject's ``names`` extra)."""

from __future__ import annotations

import gzip
import importlib
import json
import pkgutil
import re
from pathlib import Path

from bench._datasets import REPO
from bench._pii_figures import false_positives, pii_recall
from producer import pii
from tests.pii_strategies import HELDOUT_POSITIVE

_CYR = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяієїґ",
        str.split("a b v g d e yo zh z i y k l m n o p r s t u f kh ts ch sh shch _ y _ e yu ya i ye yi g"),
        strict=True,
    )
)
_GRK = dict(
    zip(
        "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώ",
        str.split("a v g d e z i th i k l m n x o p r s s t y f ch ps o a e i i o y o"),
        strict=True,
    )
)
_LATIN = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ'’-]{2,}$")
_EXTRA_PLACES = str.split(
    "english french german spanish italian portuguese dutch danish swedish norwegian finnish "
    "icelandic polish czech slovak hungarian romanian bulgarian greek turkish russian ukrainian "
    "serbian croatian slovenian irish scottish welsh british american canadian mexican brazilian "
    "argentine chinese japanese korean indian pakistani arabic hebrew african european asian latin "
    "christian muslim jewish hindu buddhist catholic protestant london paris berlin madrid rome "
    "lisbon vienna prague warsaw budapest athens dublin amsterdam brussels copenhagen stockholm oslo "
    "helsinki moscow kyiv istanbul cairo lagos nairobi tokyo beijing shanghai delhi mumbai seoul "
    "sydney melbourne toronto vancouver montreal chicago boston seattle houston dallas miami atlanta "
    "denver phoenix detroit angeles francisco york jersey orleans vegas diego washington manhattan "
    "brooklyn hollywood silicon valley europe asia africa america australia antarctica oceania mars "
    "venus jupiter saturn mercury earth pluto neptune uranus monday tuesday wednesday thursday friday "
    "saturday sunday january february march april may june july august september october november "
    "december easter christmas halloween thanksgiving san santa santo sao são los las fort mount lake "
    "port buenos aires rio"
)
_NUMBER_WORDS = set(
    str.split(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
        "hundred thousand million first second third fourth fifth sixth seventh eighth ninth tenth"
    )
)


def _translit(s: str) -> str:
    out = []
    for ch in s:
        t = _CYR.get(ch.lower(), _GRK.get(ch.lower()))
        out.append(ch if t is None else "" if t == "_" else t.capitalize() if ch != ch.lower() else t)
    return "".join(out)


def build_names(out: Path = REPO / "producer" / "data" / "names.json", with_faker: bool = True) -> int:
    import faker.providers.address.en as fa
    import faker.providers.address.en_US as fa_us
    import faker.providers.person as fp
    import names
    import spacy_lookups_data
    from zxcvbn.frequency_lists import FREQUENCY_LISTS as zx

    first: set[str] = set()
    last: set[str] = set()
    for m in pkgutil.iter_modules(fp.__path__) if with_faker else ():
        provider = importlib.import_module(f"faker.providers.person.{m.name}").Provider
        for attr in (
            "first_names",
            "first_names_male",
            "first_names_female",
            "first_names_nonbinary",
            "last_names",
            "last_names_male",
            "last_names_female",
        ):
            values = getattr(provider, attr, ())
            values = list(values) if isinstance(values, dict | list | tuple | set | frozenset) else []
            for name in values:
                for part in _translit(str(name)).split():
                    if _LATIN.match(part.strip(".")):
                        (first if attr.startswith("first") else last).add(part.strip(".").lower())
    census = Path(names.__file__).parent
    for fn, limit in (("dist.male.first", 10**6), ("dist.female.first", 10**6), ("dist.all.last", 15000)):
        with open(census / fn) as f:
            rows = [line.split()[0].lower() for _, line in zip(range(limit), f, strict=False)]
        (last if "last" in fn else first).update(rows)
    first |= set(zx["male_names"]) | set(zx["female_names"])
    last |= set(zx["surnames"])
    probs_path = Path(spacy_lookups_data.__file__).parent / "data" / "en_lexeme_prob.json.gz"
    with gzip.open(probs_path) as f:
        probs = json.load(f)
    # Common: frequent in lower case (log-prob >= -14.5), written lower case at least as often as capitalised
    # (within e^1), and seen capitalised at all (else it never reaches the name rules).
    common = {
        w
        for w, lp in probs.items()
        if w.isalpha()
        and w.islower()
        and len(w) >= 2
        and lp >= -14.5
        and lp >= probs.get(w.capitalize(), -99) - 1.0
        and probs.get(w.capitalize(), -99) >= -17
    }
    places = {c.lower() for c in fa.Provider.countries if c.isalpha()}
    places |= {s.lower() for s in fa_us.Provider.states if s.isalpha()} | set(_EXTRA_PLACES)
    data = {
        "_source": (
            "first/last: Faker person providers (MIT; Cyrillic/Greek transliterated), US Census 1990 "
            "name lists via the PyPI package 'names' (public domain; top 15000 surnames), zxcvbn name "
            "lists (MIT). common: English words that spaCy's en_lexeme_prob table (spacy-lookups-data, "
            "MIT) finds frequent and mostly lower case. places: Faker countries and US states plus a "
            "hand list. Rebuild: python bench/classify.py build-names"
        ),
        "first": "\n".join(sorted(first - places - _NUMBER_WORDS)),
        "last": "\n".join(sorted(last - places - _NUMBER_WORDS)),
        "common": "\n".join(sorted(common)),
        "places": "\n".join(sorted(places)),
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    out.write_text(text, encoding="utf-8")
    return len(text.encode())


def ablate_faker() -> None:
    """PERSON/address recall with a gazetteer built *without* Faker (census + zxcvbn lists only): the presidio
    set was generated from Faker-like lists, so this is the less optimistic figure."""
    import tempfile

    from producer import pii_names

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "names.json"
        build_names(path, with_faker=False)
        data = json.loads(path.read_text(encoding="utf-8"))
    saved = pii_names.FIRST, pii_names.LAST
    pii_names.FIRST = frozenset(data["first"].split("\n"))
    pii_names.LAST = frozenset(data["last"].split("\n"))
    try:
        recall = pii_recall()
        pos = sum(pii.scan(t).contains_pii for t in HELDOUT_POSITIVE)
        flagged, n, _ = false_positives()
    finally:
        pii_names.FIRST, pii_names.LAST = saved
    print("== gazetteer without Faker (US census + zxcvbn names only)")
    for key in ("PERSON", "PERSON or STREET_ADDRESS"):
        c, t = recall[key]
        print(f"  {key:34s} {c:4d}/{t:<4d} {c / t:6.1%}")
    print(f"  held-out hand-written, PII caught     {pos}/{len(HELDOUT_POSITIVE)}")
    print(f"  FP on GSM8K + MT-Bench turns          {flagged}/{n} {flagged / n:.1%}")
