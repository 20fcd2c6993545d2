"""Measure the router's offline classifier (PII detector and complexity score) on the shared public data.

    python bench/classify.py              # every figure: PII recall/FP, complexity AUC and bands, speed
    python bench/classify.py pii|complexity|speed
    python bench/classify.py refit        # refit the complexity model: producer/data/complexity_model.json
    python bench/classify.py build-names  # rebuild producer/data/names.json (needs faker, names, zxcvbn,
                                          # spacy-lookups-data installed; dev-only)
    python bench/classify.py ablate-faker # PERSON recall with a gazetteer built without Faker (same deps)

Data: ``<repo>/../shared/data`` (see its README, and bench/_datasets.py); nothing here is copied into the
package. This module is the entry point and measures speed; the PII figures are in bench/_pii_figures.py, the
complexity model's fit and report in bench/_complexity_fit.py, the names gazetteer in bench/_names_build.py.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._complexity_fit import refit, report_complexity  # noqa: E402
from bench._datasets import DATA, gsm8k, mt_bench, presidio  # noqa: E402
from bench._names_build import ablate_faker, build_names  # noqa: E402
from bench._pii_figures import report_pii  # noqa: E402
from producer.classify import classify  # noqa: E402


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
    # Chat text is often typed without capitals, which takes the detectors' other path (names and addresses
    # found on word lists alone, without capitals to go by).
    corpora["1 KB prose, lc"] = [t.lower() for t in corpora["1 KB prose"]]
    corpora["4 KB dense, lc"] = [t.lower() for t in corpora["4 KB PII-dense"]]
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
