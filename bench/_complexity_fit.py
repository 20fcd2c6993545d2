"""The complexity model for bench/classify.py: fitting the reasoning-load model on GSM8K (``refit`` writes
producer/data/complexity_model.json), its cross-validated ROC AUC, and the complexity report."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from bench._datasets import REPO, STRONG, WEAK, gsm8k, gsm8k_labelled, mt_bench
from producer import complexity, output_length


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


class Design(NamedTuple):
    """The model's inputs on a set of problems: an intercept column, the counts standardised and clipped as at
    run time, and word presence as 0/1 over the words seen in at least MIN_DF of them."""

    x: Any  # numpy arrays (numpy is dev-only)
    labelled: Any  # which rows have a label (both-wrong problems have none)
    y: Any  # the label, 0 where there is none
    vocabulary: list[str]
    means: Any
    sds: Any
    words: Any
    counts: Any


def design(problems: Sequence[Any]) -> Design:
    """``problems``: anything with ``present``, ``counts`` and ``label`` as :class:`_Problem` has them."""
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
    return Design(x, labelled, y, vocabulary, means, sds, words, counts)


def fit_complexity(problems: list[_Problem]) -> dict:
    """The reasoning-load model (the contents of producer/data/complexity_model.json) fitted on ``problems``:
    counts standardised and clipped as at run time, word presence as 0/1. Deterministic."""
    import numpy as np

    x, labelled, y, vocabulary, means, sds, words, counts = design(problems)
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
