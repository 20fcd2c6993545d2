"""Measure the router's offline classifier (PII detector and complexity score) on the shared public data.

    python bench/classify.py              # every figure: PII recall/FP, complexity AUC and bands, speed
    python bench/classify.py pii|complexity|speed
    python bench/classify.py refit        # refit the complexity model: producer/data/complexity_model.json
    python bench/classify.py build-names  # rebuild producer/data/names.json (needs faker, names, zxcvbn,
                                          # spacy-lookups-data installed; dev-only)
    python bench/classify.py ablate-faker # PERSON recall with a gazetteer built without Faker (same deps)

Data: ``<repo>/../shared/data`` (see its README); nothing here is copied into the package.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib
import json
import math
import pkgutil
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from producer import complexity, output_length, pii  # noqa: E402
from producer.classify import classify  # noqa: E402
from tests.pii_strategies import HELDOUT_NEGATIVE, HELDOUT_POSITIVE  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
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


# --- data ----------------------------------------------------------------------------------------------


def presidio() -> list[dict]:
    return json.loads((DATA / "pii" / "presidio_synth_dataset_v2.json").read_text(encoding="utf-8"))


def gsm8k() -> list[dict[str, str]]:
    with open(DATA / "complexity" / "gsm8k_responses.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def mt_bench() -> list[dict]:
    lines = (DATA / "complexity" / "mt_bench_questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def clean_prompts() -> list[str]:
    """PII-free prompts: every GSM8K problem and every MT-Bench turn."""
    return [r["prompt"] for r in gsm8k()] + [t for q in mt_bench() for t in q["turns"]]


def gsm8k_labelled() -> tuple[list[str], list[int]]:
    """Positive: weak model wrong, strong right. Negative: weak right. Both wrong: left out."""
    texts, labels = [], []
    for r in gsm8k():
        if r[WEAK] == "True":
            texts.append(r["prompt"])
            labels.append(0)
        elif r[STRONG] == "True":
            texts.append(r["prompt"])
            labels.append(1)
    return texts, labels


# --- PII -----------------------------------------------------------------------------------------------


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


# --- complexity ----------------------------------------------------------------------------------------


def auc(scores: list[float], labels: list[int]) -> float:
    """ROC AUC (Mann-Whitney), ties counted half."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    return (sum(r for r, y in zip(ranks, labels, strict=True) if y) - pos * (pos + 1) / 2) / (pos * neg)


#: Fixed a priori, not tuned on the test folds (a small grid on CV moved the AUC by under 0.005): words seen in
#: at least MIN_DF training prompts; L2 penalties of the logistic and ridge fits; the share of the ridge fit.
MIN_DF, L2_LABEL, L2_STEPS, MIX = 5, 100.0, 30.0, 0.5
#: Mapping the 10% and 90% quantiles of GSM8K's logit to this many logit units either side of the median puts
#: about a fifth of GSM8K below 0.3 and a fifth above 0.8.
SPREAD = 1.85


class _Problem(NamedTuple):
    text: str
    present: set[str]
    counts: tuple[float, ...]
    label: int | None  # 1: weak wrong and strong right; 0: weak right; None: both wrong
    steps: float  # log of the number of lines in GPT-4's worked answer


def _problems() -> list[_Problem]:
    out = []
    for r in gsm8k():
        text = r["prompt"]
        norm = complexity.normalise(text)
        present = set(norm.split())
        label = 0 if r[WEAK] == "True" else 1 if r[STRONG] == "True" else None
        steps = math.log(r[STRONG + "_response"].strip().count("\n") + 1)
        out.append(_Problem(text, present, complexity._counts(text, norm, present), label, steps))
    return out


def _logistic(x, y, l2: float):  # noqa: ANN001, ANN202 (numpy arrays; numpy is dev-only)
    """L2 logistic regression by Newton's method; the intercept (column 0) is not penalised."""
    import numpy as np

    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[0, 0] = 0
    for _ in range(25):
        p = 1 / (1 + np.exp(-x @ w))
        w -= np.linalg.solve((x.T * (p * (1 - p))) @ x + reg, x.T @ (p - y) + reg @ w)
    return w


def _ridge(x, y, l2: float):  # noqa: ANN001, ANN202
    import numpy as np

    reg = l2 * np.eye(x.shape[1])
    reg[0, 0] = 0
    return np.linalg.solve(x.T @ x + reg, x.T @ y)


def fit_complexity(problems: list[_Problem]) -> dict:
    """The reasoning-load model (the contents of producer/data/complexity_model.json) fitted on ``problems``:
    counts standardised and clipped as at run time, word presence as 0/1. Deterministic."""
    import numpy as np

    df = Counter(w for p in problems for w in p.present)
    vocabulary = sorted(w for w, n in df.items() if n >= MIN_DF)
    column = {w: j for j, w in enumerate(vocabulary)}
    counts = np.asarray([p.counts for p in problems])
    means, sds = counts.mean(0), counts.std(0)
    sds[sds == 0] = 1.0
    words = np.zeros((len(problems), len(vocabulary)))
    for i, p in enumerate(problems):
        for w in p.present:
            if w in column:
                words[i, column[w]] = 1.0
    x = np.c_[np.ones(len(problems)), np.clip((counts - means) / sds, -2.5, 2.5), words]
    labelled = np.asarray([p.label is not None for p in problems])
    y = np.asarray([p.label or 0 for p in problems], dtype=float)
    w_label = _logistic(x[labelled], y[labelled], L2_LABEL)
    w_steps = _ridge(x, np.asarray([p.steps for p in problems]), L2_STEPS)
    # Each predictor in units of its own spread on the labelled problems, then averaged.
    w = (1 - MIX) * w_label / (x[labelled] @ w_label).std() + MIX * w_steps / (x[labelled] @ w_steps).std()
    w = np.round(w, 4)
    n_dense = counts.shape[1]
    word_w = w[1 + n_dense :]
    model = {
        "_about": (
            "Reasoning-load model of producer/complexity.py, fitted on GSM8K (RouteLLM's gsm8k_responses.csv, "
            "Apache-2.0) by `python bench/classify.py refit`: do not edit by hand."
        ),
        "dense": [
            [name, round(float(m), 4), round(float(s), 4), float(v)]
            for name, m, s, v in zip(complexity.DENSE, means, sds, w[1 : 1 + n_dense], strict=True)
        ],
        "words": {word: float(v) for word, v in zip(vocabulary, word_w, strict=True) if v != 0.0},
        "bias": float(w[0]),
        "neutral_words": round(float((words @ word_w).mean()), 4),
        "centre": 0.0,
        "scale": 1.0,
    }
    with _installed(model):
        logits = [complexity.reasoning_logit(p.text) for p in problems]
    q10, q50, q90 = _quantiles(logits, (0.1, 0.5, 0.9))
    model["centre"] = round(q50, 4)
    model["scale"] = round((q90 - q10) / (2 * SPREAD), 4)
    return model


@contextlib.contextmanager
def _installed(model: dict) -> Iterator[None]:
    saved = complexity._MODEL
    complexity._MODEL = complexity.Model.from_dict(model)
    try:
        yield
    finally:
        complexity._MODEL = saved


def cross_validated_auc(folds: int = 5, seeds: int = 5) -> tuple[list[float], list[float], list[float]]:
    """Per seed: the AUC of the complete ``complexity_score`` (model refitted on the other folds, centring,
    scaling and task-kind cues included) on each held-out fold, and of the fitted logit alone; and the
    held-out scores of every GSM8K problem under the first seed. Problems both models got wrong are split
    into folds too (they inform the answer-length fit) but never enter an AUC."""
    import random

    problems = _problems()
    labelled = [i for i, p in enumerate(problems) if p.label is not None]
    labels = [problems[i].label for i in labelled]
    complete, logit, first = [], [], []
    for seed in range(seeds):
        order = list(range(len(problems)))
        random.Random(seed).shuffle(order)
        scores = [0.0] * len(problems)
        logits = [0.0] * len(problems)
        for f in range(folds):
            test = set(order[f::folds])
            model = fit_complexity([p for i, p in enumerate(problems) if i not in test])
            with _installed(model):
                for i in test:
                    scores[i] = complexity.complexity_score(problems[i].text)
                    logits[i] = complexity.reasoning_logit(problems[i].text)
        complete.append(auc([scores[i] for i in labelled], labels))
        logit.append(auc([logits[i] for i in labelled], labels))
        first = first or scores
    return complete, logit, first


def refit() -> None:
    """Refit on all of GSM8K and write producer/data/complexity_model.json."""
    model = fit_complexity(_problems())
    text = json.dumps(model, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    complexity.MODEL_PATH.write_text(text, encoding="utf-8")
    top = sorted(model["words"].items(), key=lambda kv: kv[1])
    print(f"wrote {complexity.MODEL_PATH.relative_to(REPO)} ({len(text.encode())} bytes, {len(top)} words)")
    print("  counts: " + ", ".join(f"{name} {w:+.3f}" for name, _, _, w in model["dense"]))
    print("  words, lowest: " + ", ".join(f"{w} {v:+.3f}" for w, v in top[:12]))
    print("  words, highest: " + ", ".join(f"{w} {v:+.3f}" for w, v in top[-12:]))
    print(f"  centre {model['centre']}, scale {model['scale']}; run `bench/classify.py complexity` for the AUCs")


def report_complexity() -> None:
    texts, labels = gsm8k_labelled()
    scores = [complexity.complexity_score(t) for t in texts]
    length = [float(len(t)) for t in texts]
    complete, logit, held_out = cross_validated_auc()
    print("== complexity (GSM8K: positive = weak wrong & strong right, negative = weak right)")
    print(
        f"  ROC AUC 5-fold CV, refit per fold, {len(complete)} seeds: complete score"
        f" {statistics.fmean(complete):.3f} (seeds {min(complete):.3f}-{max(complete):.3f}),"
        f" fitted logit alone {statistics.fmean(logit):.3f}"
    )
    print(
        f"  ROC AUC in-sample (shipped weights, optimistic) {auc(scores, labels):.3f};"
        f" prompt length alone {auc(length, labels):.3f}"
    )
    gsm = [complexity.complexity_score(r["prompt"]) for r in gsm8k()]
    mt = [(q["category"], complexity.complexity_score(t)) for q in mt_bench() for t in q["turns"]]
    both = gsm + [s for _, s in mt]
    print(
        f"  quantiles (GSM8K+MT-Bench) 10/25/50/75/90%: "
        f"{[round(v, 2) for v in _quantiles(both, (0.1, 0.25, 0.5, 0.75, 0.9))]}"
    )
    for name, values in (("GSM8K", gsm), ("MT-Bench turns", [s for _, s in mt]), ("both", both)):
        bands = (
            sum(v < 0.3 for v in values),
            sum(0.3 <= v <= 0.8 for v in values),
            sum(v > 0.8 for v in values),
        )
        print(
            f"  {name:15s} <0.3 {bands[0] / len(values):5.1%}  0.3-0.8 {bands[1] / len(values):5.1%}"
            f"  >0.8 {bands[2] / len(values):5.1%}"
        )
    for name, values in (("in-sample", gsm), ("held-out, seed 0", held_out)):
        weak_by_band: dict[str, list[int]] = {"<0.3": [], "0.3-0.8": [], ">0.8": []}
        for r, s in zip(gsm8k(), values, strict=True):
            band = "<0.3" if s < 0.3 else ">0.8" if s > 0.8 else "0.3-0.8"
            weak_by_band[band].append(r[WEAK] == "True")
        print(
            f"  Mixtral accuracy by band ({name}): "
            + ", ".join(f"{b} {statistics.fmean(v):.1%} (n={len(v)})" for b, v in weak_by_band.items() if v)
        )
    by_cat: dict[str, list[float]] = {}
    for cat, s in mt:
        by_cat.setdefault(cat, []).append(s)
    print(
        "  MT-Bench median by category: "
        + ", ".join(
            f"{c} {statistics.median(v):.2f}"
            for c, v in sorted(by_cat.items(), key=lambda kv: statistics.median(kv[1]))
        )
    )
    real = [len(r[STRONG + "_response"]) / 3.6 for r in gsm8k()]
    est = [output_length.expected_output_tokens(r["prompt"], None) for r in gsm8k()]
    print(
        f"  expected output tokens on GSM8K: median estimate {statistics.median(est):.0f} vs GPT-4 real "
        f"{statistics.median(real):.0f}; Spearman {spearman(est, real):.2f}"
    )


def _quantiles(values: list[float], qs: tuple[float, ...]) -> list[float]:
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in qs]


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    ra, rb = ranks(a), ranks(b)
    return statistics.correlation(ra, rb)


# --- speed ---------------------------------------------------------------------------------------------


def _chunks(texts: list[str], size: int) -> list[str]:
    joined = "\n".join(texts)
    return [joined[i : i + size] for i in range(0, len(joined) - size, size)]


def report_speed(repeat: int = 5) -> None:
    """µs per job and per KB of the whole classification (producer.classify.classify(): scan() +
    complexity_score() + expected_output_tokens(), what the router reads from every job, sharing the lower-cased
    text and a prefilter pass), best of ``repeat`` runs of CPU time (this
    machine is shared: wall time would measure the neighbours too)."""
    corpora = {
        "presidio": [r["full_text"] for r in presidio()],
        "GSM8K": [r["prompt"] for r in gsm8k()],
        "MT-Bench turns": [t for q in mt_bench() for t in q["turns"]],
    }
    # The router sends system + user text as one string, so real prompts are longer than these: 4 KB
    # documents of MT-Bench prose (instructions) and of GSM8K + presidio text (dense with names, numbers, PII).
    corpora["1 KB prose"] = _chunks(corpora["MT-Bench turns"] * 3, 1024)
    corpora["4 KB prose"] = _chunks(corpora["MT-Bench turns"] * 3, 4096)
    corpora["4 KB PII-dense"] = _chunks(corpora["GSM8K"] + corpora["presidio"], 4096)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"== speed (scan + complexity + output length, one core, CPU time, best of {repeat}; load {load})")
    for name, texts in corpora.items():
        kb = sum(len(t.encode()) for t in texts) / 1024
        best = math.inf
        for _ in range(repeat):
            t0 = time.process_time()
            for t in texts:
                classify(t, None)
            best = min(best, time.process_time() - t0)
        print(
            f"  {name:15s} {best / len(texts) * 1e6:7.1f} us/job  {best / kb * 1e6:6.1f} us/KB"
            f"  (mean job {kb * 1024 / len(texts):.0f} B)"
        )


# --- names gazetteer (dev-only) ------------------------------------------------------------------------

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


def main(argv: list[str]) -> None:
    what = argv[1] if len(argv) > 1 else "all"
    if what == "build-names":
        print(f"wrote {build_names()} bytes")
        return
    if what == "ablate-faker":
        ablate_faker()
        return
    if what == "refit":
        refit()
        return
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    if what in ("all", "pii"):
        report_pii()
    if what in ("all", "complexity"):
        report_complexity()
    if what in ("all", "speed"):
        report_speed()


if __name__ == "__main__":
    main(sys.argv)
