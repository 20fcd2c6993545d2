"""Classification on every core, for bulk submissions.

PII scanning and complexity scoring are pure CPU work on each job's text; a big submission spreads them over
classifier processes while the parent records and publishes. Small submissions classify inline.

The processes are plain ``python -m producer.classify_pool`` children speaking length-prefixed pickles over
their stdin and stdout, not a ``multiprocessing`` pool: a spawned multiprocessing child re-imports the
parent's ``__main__`` module (a user's script, a benchmark: SQLAlchemy, Celery, the client, half a second of
CPU each), and a forked one would inherit the producer's database and Redis sockets and threads. These import
the classifier and nothing else.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

#: Below this many jobs a submission classifies inline.
MIN_JOBS_FOR_POOL = 5000
#: Jobs per task sent to a pool process (amortises pickling and scheduling).
SLICE = 250

Item = tuple[str, int | None]  # (text, max_tokens)
Read = tuple[bool, tuple[str, ...], float, int]  # (contains_pii, pii_types, complexity, expected_output)
#: A validated line: (line number, its custom_id or None when invalid, its problems as (field, message), its
#: read when it was valid and classification was asked for).
Checked = tuple[int, str | None, list[tuple[str, str]], Read | None]

_HEADER = struct.Struct("!I")
log = logging.getLogger(__name__)


def classify_texts(items: Sequence[Item]) -> list[Read]:
    # Imported here: the parent of a pool never classifies, and need not load the detectors (15 MB).
    from producer.classify import classify

    out: list[Read] = []
    for text, max_tokens in items:
        report, score, expected = classify(text, max_tokens)
        out.append((report.contains_pii, tuple(report.types), score, expected))
    return out


def check_lines(numbers: Sequence[int], lines: Sequence[bytes], classify_valid: bool) -> list[Checked]:
    """Parse and validate JSONL lines (and classify the valid ones, if asked): a file's validation pass,
    spread over the pool."""
    from producer.reader import parse_line  # here: the reader is not needed until a file is validated

    out: list[Checked] = []
    for number, raw in zip(numbers, lines, strict=True):
        job, problems = parse_line(raw, number)
        if job is None:
            out.append((number, None, [(p.field, p.message) for p in problems], None))
        else:
            read = classify_texts([(job.text, job.max_tokens)])[0] if classify_valid else None
            out.append((number, job.custom_id, [], read))
    return out


#: The tasks a pool process runs, by name.
_TASKS: dict[str, Callable[..., list[Any]]] = {"classify": classify_texts, "check": check_lines}


def warm_detectors() -> None:
    """Compile (or load from the cache) every detector's prefilter, ASCII and Unicode, now rather than on the
    first prompt that needs it (about a second the first time on a machine)."""
    # Short and long texts (a long one's length estimate has its own pass), ASCII and not (lower-cased too).
    classify_texts([(text + pad, None) for text in ("warm up", "Unicode forms: É") for pad in ("", " " * 3000)])


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("classifier process closed its pipe")
    (size,) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


class _Child:
    """One classifier process: tasks go in order down its stdin (from a writer thread, so that handing over a
    chunk never waits for the process to catch up), reads come back in order on its stdout."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producer.classify_pool"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.pending: deque[Future[list[Any]]] = deque()
        self.outbox: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._write, name="classifier-writer", daemon=True),
            threading.Thread(target=self._read, name="classifier-reader", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, task: str, *args: Any) -> Future[list[Any]]:
        """Run ``_TASKS[task](*args)`` in the process."""
        future: Future[list[Any]] = Future()
        with self.lock:
            self.pending.append(future)
        self.outbox.put((task, args))
        return future

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (task := self.outbox.get()) is not None:
                _send(stdin, task)
            stdin.close()  # the child's loop ends at EOF
        except OSError as exc:  # the process died: the reader fails what is pending
            log.warning("classifier process %s: %s", self.proc.pid, exc)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            try:
                reads = _receive(self.proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                with self.lock:
                    pending, self.pending = self.pending, deque()
                for future in pending:
                    future.set_exception(RuntimeError(f"classifier process failed: {exc}"))
                return
            with self.lock:
                future = self.pending.popleft()
            future.set_result(reads)

    def close(self) -> None:
        """Stop the process: at once when work is still pending (a submit that failed or was interrupted has
        no use for it), else after it reads the end of its input."""
        self.outbox.put(None)
        with self.lock:
            busy = bool(self.pending)
        try:
            if busy:
                self.proc.kill()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=5)


class ClassifierPool:
    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or max(1, (os.cpu_count() or 1))
        self._children: list[_Child] = []
        self._next = 0

    def warm(self) -> None:
        """Start the processes now, without waiting: they start, import and compile their detectors while the
        caller validates its input."""
        if self.processes >= 2:
            self._pool()

    def _pool(self) -> list[_Child]:
        if not self._children:
            self._children = [_Child() for _ in range(self.processes)]
        return self._children

    def classify(self, items: Sequence[Item]) -> list[Read]:
        return self.start(items)()

    def start(self, items: Sequence[Item]) -> Callable[[], list[Read]]:
        """Begin classifying ``items`` in the pool; the returned function waits for the reads, in order.

        The submitter starts the next chunk here before recording the current one, so the pool and the
        parent's database and broker work overlap.
        """
        if self.processes < 2 or len(items) < SLICE * 2:
            reads = classify_texts(items)
            return lambda: reads
        return self._spread("classify", len(items), lambda i, j: (list(items[i:j]),))

    def check(
        self, numbers: Sequence[int], lines: Sequence[bytes], classify_valid: bool
    ) -> Callable[[], list[Checked]]:
        """Begin validating JSONL ``lines`` (and classifying the valid ones if ``classify_valid``) in the pool;
        the returned function waits for the results, in order."""
        if self.processes < 2:
            checked = check_lines(numbers, lines, classify_valid)
            return lambda: checked
        return self._spread("check", len(lines), lambda i, j: (numbers[i:j], lines[i:j], classify_valid))

    def _spread(self, task: str, n: int, args: Callable[[int, int], tuple[Any, ...]]) -> Callable[[], list[Any]]:
        """``task`` over slices [i, j) of n items, round-robin over the processes; results joined in order."""
        children = self._pool()
        futures = []
        for i in range(0, n, SLICE):
            futures.append(children[self._next].submit(task, *args(i, min(n, i + SLICE))))
            self._next = (self._next + 1) % len(children)
        return lambda: [out for f in futures for out in f.result()]

    def close(self) -> None:
        for child in self._children:
            child.close()
        self._children = []


def main() -> None:
    """A classifier process: read tasks from stdin until it closes, answer each on stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    warm_detectors()
    while True:
        try:
            task, args = _receive(stdin)
        except EOFError:
            return
        _send(stdout, _TASKS[task](*args))


if __name__ == "__main__":
    main()
