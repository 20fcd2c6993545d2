"""Loaders for the shared public data the classifier benchmarks read (``<repo>/../shared/data``, see its README);
nothing here is copied into the package."""

from __future__ import annotations

import csv
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
#: gsm8k_responses.csv columns: "True" where that model answered the problem correctly.
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


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
