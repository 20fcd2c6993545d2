"""Exploration (not shipped): training-only teachers from Mixtral's and GPT-4's worked answers, and two new
run-time prompt counts, for the reasoning-load model of producer/complexity.py. Same protocol as
``bench/classify.py complexity``: 5-fold CV, model refitted on each training split, held-out fifth scored with
the complete ``complexity_score``, mean ROC AUC over seeds. Baseline = ``fit_complexity``'s mix (label
logistic 0.5 + GPT-4 line-count ridge 0.5).

    nice -n 19 .venv/bin/python bench/_auc_explore.py            # every variant, seeds 0-4
    nice -n 19 .venv/bin/python bench/_auc_explore.py only NAME  # NAME and the baseline, seeds 0-4
    nice -n 19 .venv/bin/python bench/_auc_explore.py fresh NAME # NAME and the baseline, fresh seeds 10-19

Result (null): no variant met the bar (>= +0.005 over the baseline on fresh seeds and >= 0.65). Seeds 0-4:
baseline 0.6305. Each teacher added at 0.25 beside the GPT-4 line count at 0.25 (label 0.5): Mixtral's answer
lines 0.624, characters 0.621, arithmetic operations 0.626, distinct numbers 0.622, hedging/self-correction
0.616; GPT-4's non-integer results 0.620, fraction/percent/decimal operations 0.623, prompt numbers it leaves
unused 0.620, new numbers 0.625; log(GPT-4 / Mixtral answer length) 0.633. Multi-teacher mixes 0.618-0.623.
Ratio teacher alone 0.625, with steps at 0.3 each 0.633. New run-time counts: distinct words after a number
0.630, distinct capitalised names 0.631. Best (+g4_mx_ratio) on fresh seeds 10-19: 0.632 vs baseline 0.629
(+0.003, ahead on 10/10 seeds): below both bars, and chosen among ~17 variants. Mixtral's own answer says
little about difficulty (its line and operation counts have AUC 0.50 against the label: when wrong it writes
no more steps); only its length *relative to* GPT-4's (skipped steps) carries a little.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._complexity_fit import (  # noqa: E402
    L2_LABEL,
    L2_STEPS,
    SPREAD,
    _installed,
    _logistic,
    _quantiles,
    _ridge,
    auc,
    design,
)
from bench._datasets import STRONG, WEAK, gsm8k  # noqa: E402
from producer import complexity  # noqa: E402

# --- training-only teacher targets, from the worked answers ------------------------------------------------

_CALC = re.compile(r"<<[^>]*>>")  # GSM8K-style calculator annotations Mixtral copies: counted once, not twice
_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?")
_OP = re.compile(r"(?=\d\s*[-+*/x\u00d7\u00f7]\s*\$?\d)")
_HARD_OP = re.compile(r"(?=\d\s*/\s*\d)|(?=\d\.\d*[1-9]\s*[-+*/x\u00d7])|(?=[-+*/x\u00d7]\s*\$?\d*\.\d*[1-9])|%")
_HEDGE = re.compile(
    r"\b(wait|actually|however|mistake|incorrect|let me|recalculat|re-?check|correction|sorry|assum"
    r"|approximately|not possible|cannot|doesn.t make sense|error)",
    re.I,
)


def _numbers(s: str) -> list[str]:
    return [n.replace(",", "").rstrip(".") for n in _NUM.findall(s)]


def _non_integer(n: str) -> bool:
    return "." in n and n.split(".")[1].strip("0") != ""


def _targets(prompt: str, mx: str, g4: str) -> dict[str, float]:
    mx = _CALC.sub("", mx).strip()
    g4 = g4.strip()
    g4_nums, mx_nums = _numbers(g4), _numbers(mx)
    prompt_nums = set(_numbers(prompt))
    return {
        "steps": math.log(g4.count("\n") + 1),  # the shipped teacher
        "mx_lines": math.log(mx.count("\n") + 1),
        "mx_chars": math.log(len(mx) + 1),
        "mx_ops": math.log1p(len(_OP.findall(mx))),
        "mx_distinct": math.log1p(len(set(mx_nums))),
        "mx_hedge": float(bool(_HEDGE.search(mx))),
        "g4_mx_ratio": math.log((len(g4) + 20) / (len(mx) + 20)),  # GPT-4 wrote more than Mixtral
        "g4_nonint": math.log1p(sum(map(_non_integer, set(g4_nums)))),
        "g4_hardops": math.log1p(len(_HARD_OP.findall(g4))),
        "g4_unused": float(len(prompt_nums - set(g4_nums))),  # prompt numbers GPT-4 never writes: distractors?
        "g4_new": math.log1p(len(set(g4_nums) - prompt_nums)),  # intermediate results
    }


# --- two new run-time prompt counts (tried by patching complexity._counts) ---------------------------------

_CAPITAL = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][a-z]+)")


def _extra_units(text: str, norm: str, present: set[str]) -> tuple[float, ...]:
    """Distinct words right after a number ("3 apples", "60 meters"): how many kinds of quantity."""
    words = norm.split()
    units = {words[i + 1] for i, w in enumerate(words[:-1]) if w[0] == "0" and words[i + 1][0] != "0"}
    return (float(len(units)),)


def _extra_entities(text: str, norm: str, present: set[str]) -> tuple[float, ...]:
    """Distinct capitalised words not opening a sentence (names: how many actors)."""
    return (float(len(set(_CAPITAL.findall(text)))),)


EXTRAS: dict[str, tuple[tuple[str, ...], Callable[..., tuple[float, ...]] | None]] = {
    "base": ((), None),
    "units": (("distinct_units",), _extra_units),
    "entities": (("distinct_names",), _extra_entities),
}


@contextlib.contextmanager
def _features(extra: str) -> Iterator[None]:
    names, fn = EXTRAS[extra]
    if fn is None:
        yield
        return
    saved_dense, saved_counts = complexity.DENSE, complexity._counts

    def counts(text: str, norm: str, present: set[str]) -> tuple[float, ...]:
        return saved_counts(text, norm, present) + fn(text, norm, present)

    complexity.DENSE, complexity._counts = saved_dense + names, counts
    try:
        yield
    finally:
        complexity.DENSE, complexity._counts = saved_dense, saved_counts


class P(NamedTuple):
    text: str
    present: set[str]
    counts: tuple[float, ...]
    label: int | None
    targets: dict[str, float]


def problems(extra: str) -> list[P]:
    out = []
    with _features(extra):
        for r in gsm8k():
            text = r["prompt"]
            norm = complexity.normalise(text)
            present = set(norm.split())
            label = 0 if r[WEAK] == "True" else 1 if r[STRONG] == "True" else None
            t = _targets(text, r[WEAK + "_response"], r[STRONG + "_response"])
            out.append(P(text, present, complexity._counts(text, norm, present), label, t))
    return out


# --- variants: feature set + teacher mix (label weight = 1 - sum of teacher weights) -----------------------

VARIANTS: dict[str, tuple[str, dict[str, float]]] = {
    "baseline": ("base", {"steps": 0.5}),
    **{
        f"+{t}": ("base", {"steps": 0.25, t: 0.25})
        for t in (
            "mx_lines",
            "mx_chars",
            "mx_ops",
            "mx_distinct",
            "mx_hedge",
            "g4_mx_ratio",
            "g4_nonint",
            "g4_hardops",
            "g4_unused",
            "g4_new",
        )
    },
    "multi_mx": ("base", {"steps": 0.2, "mx_lines": 0.1, "mx_ops": 0.1, "mx_distinct": 0.1}),
    "multi_all": ("base", {"steps": 0.15, "mx_lines": 0.1, "mx_ops": 0.1, "g4_nonint": 0.1, "g4_hardops": 0.1}),
    "multi_heavy": ("base", {"steps": 0.2, "mx_lines": 0.15, "mx_ops": 0.15, "g4_hardops": 0.15}),
    # second round, after +g4_mx_ratio was the only teacher above the baseline:
    "ratio_only": ("base", {"g4_mx_ratio": 0.5}),
    "steps+ratio_.3": ("base", {"steps": 0.3, "g4_mx_ratio": 0.3}),
    "feat_units": ("units", {"steps": 0.5}),
    "feat_entities": ("entities", {"steps": 0.5}),
}


class _Fold(NamedTuple):
    x: np.ndarray
    labelled: np.ndarray
    w: dict[str, np.ndarray]  # "label" and each teacher: its predictor, in units of its spread on the labelled
    vocabulary: list[str]
    means: np.ndarray
    sds: np.ndarray
    words: np.ndarray


def _fit_parts(train: list[P], teachers: set[str]) -> _Fold:
    """As ``fit_complexity`` up to the weights, with one ridge per teacher."""
    x, labelled, y, vocabulary, means, sds, words, _ = design(train)
    parts = {"label": _logistic(x[labelled], y[labelled], L2_LABEL)}
    for t in teachers:
        parts[t] = _ridge(x, np.asarray([p.targets[t] for p in train]), L2_STEPS)
    parts = {k: v / (x[labelled] @ v).std() for k, v in parts.items()}
    return _Fold(x, labelled, parts, vocabulary, means, sds, words)


def _model(fold: _Fold, mix: dict[str, float], train: list[P]) -> dict:
    w = (1 - sum(mix.values())) * fold.w["label"] + sum(m * fold.w[t] for t, m in mix.items())
    w = np.round(w, 4)
    n_dense = fold.means.shape[0]
    word_w = w[1 + n_dense :]
    model = {
        "dense": [
            [name, round(float(m), 4), round(float(s), 4), float(v)]
            for name, m, s, v in zip(complexity.DENSE, fold.means, fold.sds, w[1 : 1 + n_dense], strict=True)
        ],
        "words": {word: float(v) for word, v in zip(fold.vocabulary, word_w, strict=True) if v != 0.0},
        "bias": float(w[0]),
        "neutral_words": round(float((fold.words @ word_w).mean()), 4),
        "centre": 0.0,
        "scale": 1.0,
    }
    with _installed(model):
        logits = [complexity.reasoning_logit(p.text) for p in train]
    q10, q50, q90 = _quantiles(logits, (0.1, 0.5, 0.9))
    model["centre"] = round(q50, 4)
    model["scale"] = round((q90 - q10) / (2 * SPREAD), 4)
    return model


def cv(names: list[str], seeds: list[int], folds: int = 5) -> dict[str, list[float]]:
    """Per variant, the held-out AUC of the complete score for each seed."""
    out: dict[str, list[float]] = {n: [] for n in names}
    for extra in dict.fromkeys(VARIANTS[n][0] for n in names):
        group = [n for n in names if VARIANTS[n][0] == extra]
        teachers = {t for n in group for t in VARIANTS[n][1]}
        probs = problems(extra)
        with _features(extra):
            labelled = [i for i, p in enumerate(probs) if p.label is not None]
            labels = [probs[i].label for i in labelled]
            for seed in seeds:
                order = list(range(len(probs)))
                random.Random(seed).shuffle(order)
                scores = {n: [0.0] * len(probs) for n in group}
                for f in range(folds):
                    test = set(order[f::folds])
                    train = [p for i, p in enumerate(probs) if i not in test]
                    fold = _fit_parts(train, teachers)
                    for n in group:
                        with _installed(_model(fold, VARIANTS[n][1], train)):
                            for i in test:
                                scores[n][i] = complexity.complexity_score(probs[i].text)
                for n in group:
                    out[n].append(auc([scores[n][i] for i in labelled], labels))
    return out


def main() -> None:
    if sys.argv[1:2] == ["only"]:
        names = ["baseline", *sys.argv[2:]]
        seeds = list(range(5))
    elif sys.argv[1:2] == ["fresh"]:
        names = ["baseline", *sys.argv[2:]]
        seeds = list(range(10, 20))
    else:
        names = list(VARIANTS)
        seeds = list(range(5))
    res = cv(names, seeds)
    base = statistics.fmean(res["baseline"])
    print(f"seeds {seeds[0]}-{seeds[-1]}: mean held-out ROC AUC of the complete score (5-fold CV, refit per fold)")
    for n in names:
        v = res[n]
        diffs = [a - b for a, b in zip(v, res["baseline"], strict=True)]
        print(
            f"  {n:16s} {statistics.fmean(v):.4f}  (seeds {min(v):.3f}-{max(v):.3f}; vs baseline"
            f" {statistics.fmean(v) - base:+.4f}, better on {sum(d > 0 for d in diffs)}/{len(diffs)} seeds)"
        )


if __name__ == "__main__":
    main()
