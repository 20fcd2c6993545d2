"""One pass over a prompt that says which detectors could possibly fire on it.

Every job is classified, and most prompts are plain prose in which no detector finds anything: the cost is
Python calling a dozen regexes and substring tests that each walk the whole text. A :class:`Gate` compiles one
necessary condition per detector (a literal or a regex that every match of the detector must contain) into a
single Hyperscan database and scans the text once, in C, at about a gigabyte a second; only the detectors
whose condition fired then run, unchanged. A gate may fire when its detector finds nothing (that costs only
time); it must never stay silent when its detector would find something (that would cost recall), so:

* patterns are compiled with ``HS_FLAG_PREFILTER``, under which Hyperscan may match more than the pattern
  says (it approximates look-arounds) but never less;
* ASCII text is scanned by a database compiled for bytes, where ``\\d``, ``\\w``, ``\\b`` and case-folding mean
  what they mean to Python's ``re`` on the same text. Other text is scanned by a second database compiled with
  ``HS_FLAG_UTF8 | HS_FLAG_UCP`` (Unicode classes, as Python's ``\\d`` matches Devanagari digits) as written,
  and its lower-cased form by a third holding only the case-blind triggers: ``str.lower`` folds characters
  that Hyperscan's case-blind matching does not (the Kelvin sign becomes "k"), and the detectors behind those
  triggers read the lower-cased text (a case-sensitive trigger guards a detector that reads the text as
  written, so it needs no second scan);
* ``\\s`` differs: Python's also matches the separators U+001C-U+001F and NEL, Hyperscan's does not. A text holding
  one of those, or a lone surrogate (no UTF-8 form), is not gated;
* ``\\d`` differs outside the Basic Multilingual Plane: Hyperscan's Unicode tables are older than Python's and miss
  digits such as U+11950 (Dives Akuru), which Python's ``\\d`` matches. A text holding any decimal digit beyond
  U+FFFF is not gated either;
* where Hyperscan is missing (a platform without a wheel) or refuses a pattern, every detector runs, and a
  warning says so once.

``tests/unit/test_prefilter.py`` checks on the shared data sets and on generated PII that gated and ungated
classification agree exactly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: (trigger name, regular expression, caseless). Several patterns may share a name: any of them fires it. The
#: expression may be a pair (for ASCII text, for other text) where a class needs spelling out per script:
#: ``[A-Z]`` on ASCII is ``\\p{Lu}`` elsewhere.
Trigger = tuple[str, str | tuple[str, str], bool]


#: Characters on which Python's ``\\s`` and Hyperscan's disagree (see the module docstring).
_UNDECIDABLE = r"[\x0b\x1c-\x1f\x85]"
#: Outside the BMP every decimal digit lies in plane 1 (tests/unit/test_prefilter.py checks all planes).
_PLANE_1 = range(0x10000, 0x20000)


def _undecidable_unicode() -> str:
    """_UNDECIDABLE for the Unicode database, plus every decimal digit outside the BMP (see the module
    docstring), as ranges: ``\\x{11950}-\\x{11959}`` and so on. Built when that database is compiled."""
    digits = {c for c in _PLANE_1 if chr(c).isdecimal()}
    starts = sorted(c for c in digits if c - 1 not in digits)
    ends = sorted(c for c in digits if c + 1 not in digits)
    ranges = "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in zip(starts, ends, strict=True))
    return _UNDECIDABLE[:-1] + ranges + "]"


class Gate:
    """A compiled set of triggers; :meth:`fired` names the ones present in a text, or None for "run all"."""

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        self._triggers = tuple(triggers)
        self._names = tuple(name for name, _, _ in self._triggers)
        self._dbs: dict[str, Any] = {}  # "ascii", "unicode" or "lowered" (case-blind triggers) -> database
        self._broken = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self, kind: str) -> Any:
        # Compiled on first use, not at import: the CLI imports the producer for commands that never scan.
        with self._lock:
            if kind in self._dbs or self._broken:
                return self._dbs.get(kind)
            try:
                import hyperscan

                unicode = kind != "ascii"
                base = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
                if unicode:
                    base |= hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
                # Ids are positions in the trigger list (the undecidable pattern's is one past its end), whatever
                # subset a database holds. The lower-cased text of a text that is decidable is decidable.
                patterns = [*enumerate(self._triggers)]
                if kind == "lowered":
                    patterns = [(i, t) for i, t in patterns if t[2]]
                else:
                    patterns.append((len(patterns), ("", _undecidable_unicode() if unicode else _UNDECIDABLE, False)))
                ids = [i for i, _ in patterns]
                expressions = [(p if isinstance(p, str) else p[unicode]).encode() for _, (_, p, _) in patterns]
                flags = [base | (hyperscan.HS_FLAG_CASELESS if caseless else 0) for _, (_, _, caseless) in patterns]
                self._dbs[kind] = _cached_compile(hyperscan, expressions, flags, ids) if ids else None
            except Exception as exc:  # ImportError, or hyperscan.error on an unsupported CPU or pattern
                self._broken = True
                log.warning("prefilter off, every detector runs on every job (slower, same results): %s", exc)
            return self._dbs.get(kind)

    def _scratch(self, kind: str, db: Any) -> Any:
        # One scratch space per thread and database: Hyperscan refuses a scratch that another scan is using,
        # and API workers re-scan prompts from many threads at once.
        scratches = getattr(self._local, "scratches", None)
        if scratches is None:
            scratches = self._local.scratches = {}
        scratch = scratches.get(kind)
        if scratch is None:
            import hyperscan

            scratch = scratches[kind] = hyperscan.Scratch(db)
        return scratch

    def fired(self, text: str, lowered: str | None = None) -> set[str] | None:
        """The names of the triggers present in ``text`` (or, for caseless ones, in ``lowered``, its
        ``str.lower()``, when the caller has it); None when the gate cannot decide (run everything)."""
        kind = "ascii" if text.isascii() else "unicode"
        db = self._dbs.get(kind)
        if db is None:
            db = self._compile(kind)
            if db is None:
                return None
        hits: set[int] = set()
        try:
            db.scan(text.encode(), match_event_handler=_collect, context=hits, scratch=self._scratch(kind, db))
            if kind == "unicode" and lowered is not None and lowered != text:
                low = self._dbs["lowered"] if "lowered" in self._dbs else self._compile("lowered")
                if low is not None:
                    low.scan(lowered.encode(), match_event_handler=_collect, context=hits,
                             scratch=self._scratch("lowered", low))
                elif self._broken:
                    return None
        except UnicodeEncodeError:
            return None  # a lone surrogate
        names = self._names
        if len(names) in hits:
            return None
        return {names[i] for i in hits}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchyard"


def _cpu_key() -> str:
    # A compiled database is tuned for the CPU that built it (SSE/AVX): a cache shared between machines must
    # not hand one to another kind of CPU.
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {flags}"


def _cached_compile(hyperscan: Any, expressions: list[bytes], flags: list[int], ids: list[int]) -> Any:
    """Compile, or load what an earlier process compiled (the Unicode database takes about a second to build:
    every classifier process, API worker and CLI command would pay it)."""
    key = hashlib.sha256(
        repr((getattr(hyperscan, "__version__", ""), _cpu_key(), expressions, flags, ids)).encode()
    ).hexdigest()[:32]
    path = _cache_dir() / f"prefilter-{key}.hsdb"
    try:
        return hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
    except Exception:  # absent, unreadable, or from another build: compile afresh
        pass
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(hyperscan.dumpb(db))
        partial.replace(path)  # atomic: a concurrent reader sees the whole file or none
    except OSError as exc:
        log.debug("prefilter cache not written: %s", exc)
    return db


def _collect(pattern_id: int, start: int, end: int, flags: int, context: set[int]) -> None:
    context.add(pattern_id)
