"""One pass over a prompt that says which detectors could possibly fire on it.

Every job is classified, and most prompts are plain prose in which no detector finds anything: the cost is
Python calling a dozen regexes and substring tests that each walk the whole text. A :class:`Gate` compiles one
necessary condition per detector (a literal or a regex that every match of the detector must contain) into a
single Hyperscan database and scans the text once, in C, at about a gigabyte a second; only the detectors
whose condition fired then run, unchanged. A gate may fire when its detector finds nothing (that costs only
time); it must never stay silent when its detector would find something (that would cost recall), so:

* patterns are compiled with ``HS_FLAG_PREFILTER``, under which Hyperscan may match more than the pattern
  says (it approximates look-arounds) but never less;
* only ASCII text is gated. On ASCII, ``\\d``, ``\\w``, ``\\b`` and case-folding mean the same to Hyperscan as
  to Python's ``re``; on other text (``\\d`` matching Devanagari digits, ``str.lower`` folding the Kelvin sign)
  they need not, so every detector runs;
* where Hyperscan is missing (a platform without a wheel) or refuses a pattern, every detector runs, and a
  warning says so once.

``tests/unit/test_prefilter.py`` checks on the shared data sets and on generated PII that gated and ungated
classification agree exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

#: (trigger name, regular expression, caseless). Several patterns may share a name: any of them fires it.
Trigger = tuple[str, str, bool]


class Gate:
    """A compiled set of triggers; :meth:`fired` names the ones present in a text, or None for "run all"."""

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        self._triggers = tuple(triggers)
        self._names = tuple(name for name, _, _ in self._triggers)
        self._db: Any = None
        self._broken = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self) -> Any:
        # Compiled on first use, not at import: the CLI imports the producer for commands that never scan.
        with self._lock:
            if self._db is not None or self._broken:
                return self._db
            try:
                import hyperscan

                db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                base = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
                db.compile(
                    expressions=[pattern.encode() for _, pattern, _ in self._triggers],
                    ids=list(range(len(self._triggers))),
                    elements=len(self._triggers),
                    flags=[base | (hyperscan.HS_FLAG_CASELESS if caseless else 0) for _, _, caseless in self._triggers],
                )
                self._db = db
            except Exception as exc:  # ImportError, or hyperscan.error on an unsupported CPU or pattern
                self._broken = True
                log.warning("prefilter off, every detector runs on every job (slower, same results): %s", exc)
            return self._db

    def _scratch(self, db: Any) -> Any:
        # One scratch space per thread: Hyperscan refuses a scratch that another scan is using, and API
        # workers re-scan prompts from many threads at once.
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            import hyperscan

            scratch = self._local.scratch = hyperscan.Scratch(db)
        return scratch

    def fired(self, text: str) -> set[str] | None:
        """The names of the triggers present in ``text``; None when the gate cannot decide (run everything)."""
        if not text.isascii():
            return None
        db = self._db if self._db is not None else self._compile()
        if db is None:
            return None
        hits: set[int] = set()
        db.scan(text.encode(), match_event_handler=_collect, context=hits, scratch=self._scratch(db))
        names = self._names
        return {names[i] for i in hits}


def _collect(pattern_id: int, start: int, end: int, flags: int, context: set[int]) -> None:
    context.add(pattern_id)
