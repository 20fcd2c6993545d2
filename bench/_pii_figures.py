"""PII detector figures for bench/classify.py: sentence- and span-level recall on presidio's synthetic set, and
false positives on PII-free prompts (GSM8K, MT-Bench)."""

from __future__ import annotations

from collections import Counter

from bench._datasets import clean_prompts, presidio
from producer import pii
from tests.pii_strategies import HELDOUT_NEGATIVE, HELDOUT_POSITIVE

GROUPS = {
    "contact/financial/government/IP": {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
    },
    "PERSON or STREET_ADDRESS": {"PERSON", "STREET_ADDRESS"},
}


def pii_recall() -> dict[str, tuple[int, int]]:
    """Sentence-level recall: a sentence is caught when scan() flags it. Per entity type and per group."""
    caught: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for row in presidio():
        kinds = {s["entity_type"] for s in row["spans"]}
        flagged = pii.scan(row["full_text"]).contains_pii
        keys = set(kinds) | {g for g, members in GROUPS.items() if kinds & members}
        if not kinds:
            keys.add("(no PII) flagged")
        for key in keys:
            total[key] += 1
            caught[key] += flagged
    return {k: (caught[k], total[k]) for k in total}


def span_recall() -> tuple[int, int]:
    """Span level: labelled spans of the target types overlapped by any finding."""
    hit = n = 0
    targets = set().union(*GROUPS.values())
    for row in presidio():
        found = pii.find(row["full_text"])
        for s in row["spans"]:
            if s["entity_type"] in targets:
                n += 1
                hit += any(f.start < s["end_position"] and s["start_position"] < f.end for f in found)
    return hit, n


def false_positives() -> tuple[int, int, Counter[str]]:
    prompts = clean_prompts()
    kinds: Counter[str] = Counter()
    flagged = 0
    for p in prompts:
        report = pii.scan(p)
        flagged += report.contains_pii
        kinds.update(report.types)
    return flagged, len(prompts), kinds


def typed_differently() -> dict[str, tuple[int, int]]:
    """Sentences holding a person's name, caught when the name is typed in lower case inside the sentence, when
    the whole sentence is (no capitals at all), and when it is shouted; and clean prompts flagged when shouted."""
    out: dict[str, tuple[int, int]] = {}
    rows = [r for r in presidio() if any(s["entity_type"] == "PERSON" for s in r["spans"])]

    def names_lowered(row: dict) -> str:
        text = row["full_text"]
        for s in sorted(row["spans"], key=lambda s: -s["start_position"]):
            if s["entity_type"] == "PERSON":
                a, b = s["start_position"], s["end_position"]
                text = text[:a] + text[a:b].lower() + text[b:]
        return text

    for name, form in (("name in lower case", names_lowered), ("all lower case", lambda r: r["full_text"].lower()),
                       ("all upper case", lambda r: r["full_text"].upper())):
        out[f"PERSON sentences, {name}"] = (sum(pii.scan(form(r)).contains_pii for r in rows), len(rows))
    prompts = clean_prompts()
    out["clean prompts flagged, all upper case"] = (sum(pii.scan(p.upper()).contains_pii for p in prompts),
                                                   len(prompts))
    return out


def report_pii() -> None:
    print("== PII (presidio synth v2, sentence caught when scan() flags it)")
    for key, (c, n) in sorted(pii_recall().items(), key=lambda kv: -kv[1][1]):
        print(f"  {key:34s} {c:4d}/{n:<4d} {c / n:6.1%}")
    hit, n = span_recall()
    print(f"  span-level recall, target types      {hit}/{n} {hit / n:.1%}")
    pos = sum(pii.scan(t).contains_pii for t in HELDOUT_POSITIVE)
    neg = sum(pii.scan(t).contains_pii for t in HELDOUT_NEGATIVE)
    print(f"  held-out hand-written, PII caught     {pos}/{len(HELDOUT_POSITIVE)} {pos / len(HELDOUT_POSITIVE):.1%}")
    print(f"  held-out hand-written clean, flagged  {neg}/{len(HELDOUT_NEGATIVE)}")
    flagged, n, kinds = false_positives()
    print(f"  FP on GSM8K + MT-Bench turns          {flagged}/{n} {flagged / n:.1%}  {dict(kinds)}")
    print("  typed otherwise (no target; capitals are evidence the lists alone cannot replace):")
    for key, (c, n) in typed_differently().items():
        print(f"    {key:36s} {c:4d}/{n:<4d} {c / n:6.1%}")
