"""Reading job files: JSONL in either input form, validated line by line, streamed.

A file is validated whole before anything is enqueued: ``validate_file`` makes one streaming pass that keeps
only the custom_ids seen (for duplicates) and the problems found, so a file of any size fits in memory;
``iter_jobs`` then streams the parsed jobs for submission.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import ValidationError

from schemas.jobs import InferenceJob, parse_job
from switchyard.errors import WHOLE_LINE, InputError, InputProblem

if TYPE_CHECKING:
    from producer.classify_pool import Checked, ClassifierPool, Read

#: Stop collecting after this many problems: the user fixes the pattern, not 10^6 lines one by one.
MAX_PROBLEMS = 1000
#: Read buffer for input files. Each read releases the GIL, and on the bulk submit path the thread that reads
#: then waits up to a switch interval to get it back from the pool and writer threads: 8 KB reads of a 100 MB
#: file cost the submit command ~0.6 s that way, 1 MB reads next to nothing.
READ_BUFFER = 1 << 20


#: pydantic names the branch of a union in the location ("content.str"); users want the field only.
_BRANCH = re.compile(r"^(str|int|float|bool|none|list\[.*|dict\[.*|function-.*|constrained-.*)$")


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and _BRANCH.match(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or WHOLE_LINE


#: A job with no text, in the contract's terms (CONTRACT.md, "Job input").
NO_PROMPT = 'missing: a job needs "prompt" (short form) or "body.messages" (OpenAI Batch form)'


def problems_of(error: ValidationError, line: int | None) -> list[InputProblem]:
    """One problem per field (a union reports each branch; the first message is the useful one)."""
    seen: dict[str, InputProblem] = {}
    for e in error.errors():
        if e["type"] == "missing" and tuple(e["loc"]) == ("messages",):
            # Neither form's text: parse_job fell through to the internal form, whose field name ("messages")
            # is neither what the short form nor the OpenAI Batch form calls it.
            seen.setdefault("prompt", InputProblem(line, "prompt", NO_PROMPT))
            continue
        field = _field(tuple(e["loc"]))
        seen.setdefault(field, InputProblem(line, field, e["msg"]))
    return list(seen.values())


def parse_line(raw: bytes | str, line: int) -> tuple[InferenceJob | None, list[InputProblem]]:
    """One line -> a job, or the problems that name its line and field."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, [InputProblem(line, WHOLE_LINE, f"not valid JSON: {_json_error(exc)}")]
    except UnicodeDecodeError as exc:
        return None, [InputProblem(line, WHOLE_LINE, f"not valid UTF-8 at byte {exc.start + 1}")]
    if not isinstance(obj, dict):
        return None, [InputProblem(line, WHOLE_LINE, "a job must be a JSON object")]
    if "custom_id" not in obj:
        return None, [InputProblem(line, "custom_id", "missing")]
    try:
        return parse_job(obj), []
    except ValidationError as exc:
        return None, problems_of(exc, line)


def _json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's message with a column in the line, not its own "line 2 column 1 (char 40)": each line is
    decoded alone, so its line numbers count within the line (a truncated object ends on "line 2", after the
    newline) and only confuse next to the file's line number."""
    if exc.pos >= len(exc.doc.rstrip()):
        return f"{exc.msg} at end of line"
    return f"{exc.msg} at column {exc.pos + 1}"


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(stream, 1):
        if raw.strip():
            yield number, raw


@dataclass
class FileCheck:
    """The outcome of validating a file."""

    jobs: int
    problems: list[InputProblem]
    truncated: bool = False  # more problems than MAX_PROBLEMS
    reads: list[list[Read]] = field(default_factory=list)  # classifications of its first chunks (pool pass)


class _Tally:
    """What a validation pass keeps: a hash of every valid job's custom_id, the problems, the count.

    Hashes in an array, not the custom_ids in a dict: a million lines' ids with their line numbers took ~190 MB,
    their hashes take 8. Repeats are found at the end (sorted); only when there is one is the file read again,
    to name each real duplicate with its custom_id and first line (two ids may share a hash).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.hashes = array("q")
        self.problems: list[InputProblem] = []
        self.count = 0
        self.truncated = False

    def add(self, number: int, custom_id: str | None, found: list[InputProblem]) -> None:
        """One line: its custom_id when it parsed, else its problems."""
        if custom_id is not None:
            self.hashes.append(hash(custom_id))
            self.count += 1
        else:
            self._problems(found)

    def _problems(self, found: list[InputProblem]) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.extend(found)
        else:
            self.truncated = True

    def result(self) -> FileCheck:
        ordered, self.hashes = sorted(self.hashes), array("q")
        repeated = {a for a, b in pairwise(ordered) if a == b}
        del ordered
        if repeated:
            self._name_duplicates(repeated)
        if self.count == 0 and not self.problems:
            self.problems.append(InputProblem(None, "(file)", "no jobs in the file"))
        return FileCheck(self.count, self.problems, self.truncated)

    def _name_duplicates(self, repeated: set[int]) -> None:
        """Read the file again for the valid jobs whose custom_id hash repeats; report every later one."""
        first: dict[str, int] = {}
        duplicates = []
        with open(self.path, "rb", buffering=READ_BUFFER) as stream:
            for number, raw in _lines(stream):
                custom_id = _custom_id(raw)
                if custom_id is None or hash(custom_id) not in repeated:
                    continue
                job, _ = parse_line(raw, number)  # only valid jobs count, as in the first pass
                if job is None:
                    continue
                line = first.setdefault(job.custom_id, number)
                if line != number:
                    duplicates.append(
                        InputProblem(number, "custom_id", f"duplicate {job.custom_id!r} (first on line {line})")
                    )
        self.count -= len(duplicates)
        self._problems(duplicates)
        self.problems.sort(key=lambda p: p.line or 0)


def _custom_id(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    value = obj.get("custom_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


#: Blocks of lines being validated in the pool at once (each ``chunk`` lines).
_BLOCKS_IN_FLIGHT = 4


def validate_file(
    path: str | Path,
    progress: Any = None,
    pool: ClassifierPool | None = None,
    chunk: int = 2000,
    classify_chunks: int = 0,
) -> FileCheck:
    """One streaming pass over the file; every problem with its line and field.

    With a classifier ``pool`` the lines are parsed and validated in its processes, ``chunk`` lines per block,
    and the valid jobs of the first ``classify_chunks`` blocks are classified there too: when the file is valid,
    ``reads`` holds their classifications, one list per chunk of the submission pass (blocks of non-blank lines
    are those chunks). Memory stays bounded either way: custom_ids, problems, a few blocks in flight.
    """
    tally = _Tally(path)
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        if pool is None:
            for number, raw in _lines(stream):
                if progress is not None:
                    progress(len(raw))
                job, found = parse_line(raw, number)
                tally.add(number, None if job is None else job.custom_id, found)
            return tally.result()
        reads: list[list[Read]] = []
        inflight: deque[tuple[int, Callable[[], list[Checked]], bool]] = deque()

        def settle(size: int, checked: Callable[[], list[Checked]], classified: bool) -> None:
            block_reads = []
            for number, custom_id, found, read in checked():
                tally.add(number, custom_id, [InputProblem(number, f, message) for f, message in found])
                if read is not None:
                    block_reads.append(read)
            if classified and not tally.problems:
                reads.append(block_reads)
            if progress is not None:
                progress(size)

        for index, block in enumerate(_blocks(stream, chunk)):
            numbers, lines = [n for n, _ in block], [raw for _, raw in block]
            classify = index < classify_chunks
            inflight.append((sum(map(len, lines)), pool.check(numbers, lines, classify), classify))
            if len(inflight) > _BLOCKS_IN_FLIGHT:
                settle(*inflight.popleft())
        while inflight:
            settle(*inflight.popleft())
    check = tally.result()
    check.reads = [] if check.problems else reads
    return check


def _blocks(stream: BinaryIO, size: int) -> Iterator[list[tuple[int, bytes]]]:
    lines = _lines(stream)
    while block := list(islice(lines, size)):
        yield block


def iter_file_jobs(path: str | Path) -> Iterator[tuple[int, InferenceJob]]:
    """Stream (line, job) of a file that validate_file accepted."""
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        for number, raw in _lines(stream):
            job, found = parse_line(raw, number)
            if job is None:
                raise InputError(found)  # the file changed since it was validated
            yield number, job


def collect_jobs(
    items: Iterable[Any], on_chunk: Callable[[list[InferenceJob]], None] | None = None, chunk: int = 2000
) -> list[InferenceJob]:
    """Validate an in-memory iterable (Python client); all problems at once, positions 1-based.

    ``on_chunk`` sees each run of ``chunk`` valid jobs as soon as it is read (while no problem has been found),
    so that classification can start before validation ends; it is not called once a problem is found.
    """
    jobs: list[InferenceJob] = []
    problems: list[InputProblem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items, 1):
        try:
            if isinstance(item, dict) and "custom_id" not in item:
                problems.append(InputProblem(index, "custom_id", "missing"))
                continue
            job = parse_job(item)
        except ValidationError as exc:
            problems.extend(problems_of(exc, index))
            continue
        except TypeError as exc:
            problems.append(InputProblem(index, WHOLE_LINE, str(exc)))
            continue
        first = seen.setdefault(job.custom_id, index)
        if first != index:
            problems.append(InputProblem(index, "custom_id", f"duplicate {job.custom_id!r} (first at {first})"))
            continue
        jobs.append(job)
        if on_chunk is not None and not problems and len(jobs) % chunk == 0:
            on_chunk(jobs[-chunk:])
    if problems:
        raise InputError(problems)
    if on_chunk is not None and len(jobs) % chunk:
        on_chunk(jobs[-(len(jobs) % chunk) :])
    return jobs
