"""Fault injection and the request log of the local provider servers."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from switchyard.localapi.protocol import MALFORMED_KINDS, prompt_hash

# --- faults ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Fault:
    kind: str  # "status" | "drop" | "malformed" | "delay"
    count: int
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    malformed: str = "non_json"
    delay_s: float = 0.0


class FaultPlan:
    """Faults queued for the next model requests (first in, first used) plus a standing delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self.delay_s = 0.0

    def add(self, fault: Fault) -> None:
        if fault.count < 1:
            raise ValueError("count must be >= 1")
        if fault.kind == "malformed" and fault.malformed not in MALFORMED_KINDS:
            raise ValueError(f"malformed kind must be one of {MALFORMED_KINDS}")
        with self._lock:
            self._queue.append(fault)

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self.delay_s = max(0.0, seconds)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.delay_s = 0.0

    def take(self) -> tuple[Fault | None, float]:
        """The fault for this request (if any) and how long to hold the response."""
        with self._lock:
            if not self._queue:
                return None, self.delay_s
            fault = self._queue[0]
            fault.count -= 1
            if fault.count <= 0:
                self._queue.popleft()
            return fault, self.delay_s + fault.delay_s

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._queue]


# --- request log -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestRecord:
    time: float
    method: str
    path: str
    model: str | None = None
    prompt_sha256: str | None = None  # of the whole prompt: every text joined by "\n"
    message_sha256: list[str] = field(default_factory=list)  # of each message's text
    prompt_head: str = ""
    status: int | None = None  # None: the connection was dropped without a response
    outcome: str = ""  # ok | rate_limited | fault | dropped | malformed | rejected
    request_id: str | None = None


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count_status(self, status: int) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.status == status)

    def saw_prompt(self, text: str) -> bool:
        """True if a request carried exactly this prompt, or this text as one of its messages."""
        digest = prompt_hash(text)
        with self._lock:
            return any(digest == r.prompt_sha256 or digest in r.message_sha256 for r in self._records)
