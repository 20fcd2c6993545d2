"""The word lists behind :mod:`producer.pii_names`: the gazetteer and the hand-written sets.

The gazetteer (``data/names.json``, sources in ``data/NAMES_SOURCES.md``) holds first names and surnames from
Faker's locales and the US census, plus the common English words used to tell "Will", "Rose" or "Brown" the
word from the name. Everything is a frozenset or a tuple for ``str.endswith``: the finder runs on every job.
"""

from __future__ import annotations

import json
from pathlib import Path


def _load() -> tuple[frozenset[str], ...]:
    data = json.loads((Path(__file__).parent / "data" / "names.json").read_text(encoding="utf-8"))
    return tuple(frozenset(data[key].split("\n")) for key in ("first", "last", "common", "places"))


FIRST, LAST, _WORDS, PLACES = _load()
# Words that are never a name on their own: dictionary words, places, languages, months.
COMMON = _WORDS | PLACES

_TITLES = frozenset(
    str.split(
        "mr mrs ms miss mx dr prof sir dame lady lord madam madame mme mlle herr frau sr sra srta rev "
        "fr capt lt sgt col gen hon judge justice officer nurse doctor professor mister señor señora "
        "senhor senhora"
    )
)
_PARTICLES = frozenset(str.split("van von de der den del della di da dos das du la le ter ten bin al el af zu"))
# Endings that mark surnames in many languages (str.endswith with a tuple: C speed). The distinctive ones may
# flag a lone unknown word; the broad ones (-er, -es, ...) only complete a full name after a known first name.
_SURNAME_DISTINCT = tuple(
    str.split(
        "sson sen dóttir dottir ović ovic ević evic ić ová ov ev ova eva ina aya ski ska sky ský cki "
        "cka czyk wicz vich vna enko chuk yan idis poulos akis oglu oğlu escu nen inen dze shvili "
        "ström qvist gaard"
    )
)
_SURNAME_BROAD = _SURNAME_DISTINCT + tuple(
    str.split(
        "son ian mann ez es ini elli etti ucci ssi ier eau aux ault berg stein feld lund haus ach er "
        "aari anen onen lehto ink uk"
    )
)
# Job titles and roles written before a name: "Producer Liviana Palerma", "tennis player Amy Jones".
_ROLES = frozenset(
    str.split(
        "producer director ceo cfo cto coo founder co-founder manager engineer writer author artist "
        "singer player coach commenter speaker editor reporter journalist agent secretary president "
        "chairman chairwoman minister senator colleague assistant songwriter musician actor actress "
        "lawyer attorney accountant consultant analyst officer detective captain teacher student "
        "intern nurse surgeon dentist pharmacist"
    )
)
# Labels that announce a name: what follows is a name even when no list knows it. Checked on the last one to
# three words before a candidate (punctuation dropped), as sets, not one big regex alternation.
_LABEL_LAST = frozenset(
    str.split(
        "name named called dear signed sincerely regards cheers thanks attn attention patient client "
        "applicant tenant employee student guardian beneficiary spouse husband wife cc author witness "
        "contact heard surname nickname username hi hello hey call ask tell email text thank met says said "
        "asks asked told replied"
    )
)
_LABEL_PAIRS = frozenset(
    tuple(p.split())
    for p in str.split(
        "name is|name s|i m|i am|this is|call me|calls me|known as|goes by|speak to|spoke to|spoke with|"
        "talk to|talked to|up with|names are|my kid|my son|my daughter|my child|my mother|my father|"
        "my mom|my dad|my brother|my sister|my friend|my boss|my colleague|my manager|my neighbor|"
        "my neighbour|my doctor|my grandson|my granddaughter|my nephew|my niece|my cousin|my uncle|"
        "my aunt|my partner|my husband|my wife|partner s|is named",
        "|",
    )
)
# Public figures and eponyms ("Fibonacci numbers", "Bayes' rule", "Elon Musk"): not private persons. A short
# hand list of the ones prompts mention most; anything else about a famous person is still flagged.
_FAMOUS = frozenset(
    str.split(
        "fibonacci newton einstein darwin shakespeare socrates plato aristotle euler gauss pythagoras turing "
        "dijkstra bayes fourier laplace riemann euclid kepler galileo freud marx keynes napoleon bernoulli "
        "markov boolean hilbert fermat descartes leibniz nietzsche tolstoy dostoevsky voltaire rousseau hobbes "
        "hume mozart beethoven picasso gandhi mandela obama churchill elon musk zuckerberg bezos frodo baggins "
        "sherlock gatsby hamlet"
    )
)
# Capitalised words that open a sentence before a name but are never part of it.
_PRONOUN_I = frozenset(
    str.split("i i'm i’m i'd i’d i'll i’ll i've i’ve hi hello hey dear thanks cheers regards sincerely signed attn cc")
)
# Words _judge skips at the head of a run, and so in every position of a run made only of them.
_NEVER_A_NAME = (COMMON | _PRONOUN_I) - _TITLES
