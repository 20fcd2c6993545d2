"""A bundled, deterministic mixed workload that looks like the company's traffic (for the demo and benches).

Five kinds, in roughly the proportions the decision record plans for (about 70% self-hosted):
documents carrying personal data (must stay in-house), simple questions (small model), everyday business
writing (default model), hard reasoning and code (strong commercial model), and long-form writing (long-output
commercial model). The personal data is invented.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Rahul", "Fatima", "Lukas", "Sofia", "Kwame", "Elena", "Tomás"]
LAST = ["Gonzalez", "O'Connor", "Khan", "Zhang", "Ivanova", "Sharma", "Haddad", "Becker", "Rossi", "Mensah"]
CITIES = ["Springfield", "Leeds", "Lyon", "Pune", "Austin", "Porto", "Gdansk", "Accra"]
STREETS = ["Maple Avenue", "High Street", "Rue de la Paix", "MG Road", "Elm Street", "Baker Lane"]
COUNTRIES = ["France", "Kenya", "Peru", "Japan", "Canada", "Norway", "Egypt", "Chile", "India", "Poland"]
TERMS = ["inflation", "photosynthesis", "a mortgage", "an API", "a haiku", "GDP", "a sonnet", "a firewall",
         "compound interest", "a noun"]
TOPICS = ["remote work policy", "the Q3 logistics review", "supplier onboarding", "the new expense tool",
          "data retention rules", "the office move", "customer churn", "the hiring freeze"]
LONG_TOPICS = ["the history of European canals", "the future of urban transport", "renewable energy markets",
               "the ethics of artificial intelligence", "supply chain resilience", "the economics of healthcare"]

PII_DOCS = [
    "Summarise this support ticket. Customer: {name}, email {email}, phone {phone}. They report that order "
    "#{n} arrived damaged and ask for a refund to card ending {last4}.",
    "Patient: {name}, DOB {dob}, MRN {mrn}. Draft a short discharge summary for the attending physician based "
    "on these notes: stable vitals, follow-up in two weeks.",
    "Extract the key terms from this tenancy agreement between {name}, residing at {street_no} {street}, "
    "{city}, and the landlord. Deposit paid from IBAN {iban}.",
    "Write a polite reply to {name} ({email}) who asked to update the postal address on file to {street_no} "
    "{street}, {city}.",
    "HR note: employee {name}, SSN {ssn}, requested parental leave starting next month. Summarise the request "
    "for the payroll team.",
]
SIMPLE = [
    "What is the capital of {country}?",
    "Define {term} in one sentence.",
    "Translate 'good morning, see you tomorrow' into French.",
    "Is {n} an even number?",
    "Give me a synonym for 'happy'.",
    "What is {a} plus {b}?",
]
MEDIUM = [
    "Summarise the main points of {topic} for an internal newsletter, covering why it changed, who is affected "
    "and what teams should do differently over the next quarter.",
    "Draft an email to the operations team explaining the decision on {topic}, with the reasons, the timeline "
    "and a short list of open questions for the next meeting.",
    "Compare two options for {topic}: keeping the current process or moving to a shared service. List the "
    "advantages and drawbacks of each and recommend one.",
]
HARD = [
    "A warehouse ships {a} pallets on Monday, then each day ships 15% more than the day before, but on Thursday "
    "a third of the stock is returned and re-shipped on Friday at a 20% discount of $ {b} per pallet. Work out, "
    "step by step, the total revenue for the week, then prove the general formula for n days and analyse how "
    "the discount rate changes the break-even point.",
    "Write a Python function that finds the longest path in a directed acyclic graph with weighted edges, prove "
    "its correctness, analyse its time and space complexity, and then extend it to return all paths of maximum "
    "weight. Include unit tests.",
    "Prove that for every integer n greater than {a}, the sum of the first n odd numbers is a perfect square, "
    "then derive a closed form for the sum of the first n odd cubes and prove it by induction, step by step.",
    "Design a concurrent rate limiter that is correct across several hosts sharing one Redis. Derive the "
    "worst-case overshoot of a fixed-window algorithm, prove that a sliding-window log never exceeds the limit, "
    "and implement it with an atomic Lua script, explaining each step of the reasoning.",
]
LONG = [
    "Write a {words}-word report on {ltopic}, with an executive summary, five detailed chapters and a conclusion.",
    "Write a detailed {pages}-page white paper on {ltopic} for the board, with sections, examples and "
    "recommendations.",
    "Write a long-form feature article of about {words} words on {ltopic}, in the style of a weekly magazine.",
]

#: (kind, weight, templates)
MIX: list[tuple[str, float, list[str]]] = [
    ("pii_document", 0.22, PII_DOCS),
    ("simple_question", 0.30, SIMPLE),
    ("business_writing", 0.23, MEDIUM),
    ("hard_reasoning", 0.15, HARD),
    ("long_form", 0.10, LONG),
]


def _fields(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower().replace(chr(39), '')}@example.com",
        "phone": f"+44 20 7946 {rng.randint(1000, 9999)}",
        "n": rng.randint(10_000, 99_999), "last4": rng.randint(1000, 9999),
        "dob": f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "mrn": f"MRN-{rng.randint(100000, 999999)}", "street_no": rng.randint(1, 250),
        "street": rng.choice(STREETS), "city": rng.choice(CITIES), "ssn": f"{rng.randint(100, 665)}-"
        f"{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "iban": "GB82 WEST 1234 5698 7654 32", "country": rng.choice(COUNTRIES), "term": rng.choice(TERMS),
        "a": rng.randint(2, 400), "b": rng.randint(2, 400), "topic": rng.choice(TOPICS),
        "ltopic": rng.choice(LONG_TOPICS), "words": rng.choice([2500, 3000, 4000, 5000]),
        "pages": rng.choice([8, 10, 12]),
    }


def generate(n: int, seed: int = 2026, tenants: tuple[str, ...] = ("legal", "support", "research",
                                                                   "marketing")) -> Iterator[dict[str, Any]]:
    """``n`` short-form jobs, deterministic for a seed. ``metadata.kind`` says what each one is."""
    rng = random.Random(seed)
    kinds = [k for k, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    templates = {k: t for k, _, t in MIX}
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        prompt = rng.choice(templates[kind]).format(**_fields(rng))
        job: dict[str, Any] = {"custom_id": f"demo-{i:05d}", "prompt": prompt, "tenant": rng.choice(tenants),
                               "metadata": {"kind": kind}}
        if kind == "simple_question":
            job["max_tokens"] = 64
        elif kind != "long_form":
            job["max_tokens"] = 512
        if rng.random() < 0.1:
            job["priority"] = 7
        yield job
