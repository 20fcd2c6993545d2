"""Shared machinery of the local simulated provider APIs: rate limits, faults, request log, HTTP plumbing.

One :class:`SimulatedAPIServer` serves one wire dialect (OpenAI or Anthropic, see the sibling modules). The
stdlib threaded HTTP server is enough: one thread per connection, HTTP/1.1 keep-alive with Content-Length,
and everything the tests need to observe is in memory and guarded by locks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

SIMULATED_HEADER = "x-switchyard-simulated"
WINDOW_S = 60.0
PROMPT_HEAD_CHARS = 24
MALFORMED_KINDS = ("non_json", "html", "wrong_shape")


def prompt_hash(text: str) -> str:
    """The hash under which the request log remembers a prompt or one message's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- what a model call asks for, and what the simulator answers --------------------------------------------


def prompt_texts(body: Any) -> list[str]:
    """The texts of a chat request, system prompt first: both dialects put text in the same places."""
    if not isinstance(body, dict):
        return []
    parts = [body["system"]] if body.get("system") is not None else []
    messages = body.get("messages")
    parts += [m.get("content") for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    return [_text_of(p) for p in parts]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts / Anthropic content blocks
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A valid model request, reduced to what the simulator needs."""

    model: str
    texts: list[str]
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class Completion:
    """The simulated answer, computed on arrival so that TPM counts its real size."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # stopped by max_tokens or the context window


def prompt_tokens_of(texts: list[str]) -> int:
    """The simulator's prompt token count: about 4 characters a token."""
    return max(1, math.ceil(len("\n".join(texts)) / 4))


def simulate(call: ParsedCall, *, context_window: int | None = None) -> Completion:
    """Deterministic text and usage: prompt ≈ chars/4, completion = min(max_tokens, f(prompt))."""
    joined = "\n".join(call.texts)
    prompt_tokens = prompt_tokens_of(call.texts)
    natural = 8 + int(prompt_hash(joined)[:8], 16) % 57  # 8..64 tokens, stable per prompt
    cap = natural if call.max_tokens is None else call.max_tokens
    if context_window is not None:
        cap = min(cap, max(1, context_window - prompt_tokens))
    completion_tokens = max(1, min(natural, cap))
    prefix = f"[simulated {call.model}]"  # simulated output says so wherever it ends up
    words = " ".join(f"tok{i}" for i in range(completion_tokens))
    text = f"{prefix} {words}"[: max(len(prefix), completion_tokens * 4)]
    return Completion(text, prompt_tokens, completion_tokens, truncated=completion_tokens < natural)


class DialectError(Exception):
    """A request the dialect rejects, rendered in that dialect's error format."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class Dialect(ABC):
    """One provider's wire format; see openai_server.py and anthropic_server.py."""

    name: str
    base_path: str  # appended to the server URL to give the SDK's base_url
    completion_path: str
    models_path: str
    request_id_header: str

    @abstractmethod
    def parse(self, body: Any, headers: Mapping[str, str], context_window: int | None) -> ParsedCall:
        """Validate a model request; raise DialectError as the real API would."""

    @abstractmethod
    def success_body(self, call: ParsedCall, done: Completion) -> dict[str, Any]: ...

    @abstractmethod
    def error_body(self, status: int, message: str, request_id: str, *, code: str | None = None,
                   param: str | None = None, kind: str | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def limit_headers(self, snap: LimitSnapshot) -> dict[str, str]: ...

    @abstractmethod
    def models_body(self, models: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def new_request_id(self) -> str: ...

    def wrong_shape_body(self, call: ParsedCall) -> dict[str, Any]:
        """Valid JSON that is not the expected object (what a misconfigured proxy might send)."""
        return {"object": "unexpected", "model": call.model, "note": "[simulated] malformed response"}


# --- sliding-window RPM/TPM limiter ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitSnapshot:
    requests_limit: int | None
    requests_remaining: int | None
    requests_reset_s: float  # until the oldest admitted request leaves the window
    tokens_limit: int | None
    tokens_remaining: int | None
    tokens_reset_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    snapshot: LimitSnapshot
    retry_after_s: float = 0.0
    exhausted: str | None = None  # "requests" | "tokens"


class SlidingWindowLimiter:
    """RPM and TPM over a sliding window; a request costs its prompt + completion tokens when it arrives.

    Rejected requests do not consume the window, so a client that honours Retry-After gets in on time.
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0
        self._window, self._clock = window_s, clock
        self.rpm, self.tpm = rpm, tpm

    def configure(self, rpm: int | None, tpm: int | None) -> None:
        with self._lock:
            self.rpm, self.tpm = rpm, tpm

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._tokens = 0

    def admit(self, tokens: int) -> Admission:
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait_r = self._wait_requests(now)
            wait_t = self._wait_tokens(now, tokens)
            if wait_r > 0 or wait_t > 0:
                kind = "requests" if wait_r >= wait_t else "tokens"
                return Admission(False, self._snapshot(now), max(wait_r, wait_t), kind)
            self._events.append((now, tokens))
            self._tokens += tokens
            return Admission(True, self._snapshot(now))

    def snapshot(self) -> LimitSnapshot:
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._snapshot(now)

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self._window:
            self._tokens -= self._events.popleft()[1]

    def _wait_requests(self, now: float) -> float:
        if self.rpm is None or len(self._events) < self.rpm:
            return 0.0
        if self.rpm <= 0:
            return self._window
        # len - rpm + 1 admitted requests must leave the window; the last of them is at index len - rpm.
        return self._events[len(self._events) - self.rpm][0] + self._window - now

    def _wait_tokens(self, now: float, tokens: int) -> float:
        if self.tpm is None or self._tokens + tokens <= self.tpm:
            return 0.0
        if tokens > self.tpm:
            return self._window  # can never fit; the real APIs answer 429 here too
        freed = 0
        for t, n in self._events:
            freed += n
            if self._tokens - freed + tokens <= self.tpm:
                return t + self._window - now
        return self._window

    def _snapshot(self, now: float) -> LimitSnapshot:
        reset = self._events[0][0] + self._window - now if self._events else 0.0
        return LimitSnapshot(
            self.rpm, None if self.rpm is None else max(0, self.rpm - len(self._events)), reset,
            self.tpm, None if self.tpm is None else max(0, self.tpm - self._tokens), reset,
        )


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


# --- HTTP ------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    timeout = 30  # idle keep-alive connections give their thread back
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def end_headers(self) -> None:
        self.send_header(SIMULATED_HEADER, "true")  # on every response, the stdlib's own errors included
        super().end_headers()

    def do_GET(self) -> None:
        self.server.app.handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.server.app.dialect.name, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of ~50 simultaneous connects must not be refused
    app: SimulatedAPIServer

    def __init__(self, addr: tuple[str, int], app: SimulatedAPIServer) -> None:
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_all(self) -> None:
        """Close kept-alive connections too, so a stopped server really stops answering."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def send_json(req: BaseHTTPRequestHandler, status: int, body: Any, headers: Mapping[str, str] | None = None,
              *, raw: bytes | None = None, content_type: str = "application/json") -> None:
    payload = raw if raw is not None else json.dumps(body).encode("utf-8")
    try:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        req.close_connection = True  # the client gave up (e.g. its timeout fired during a delay)


def drop_connection(req: BaseHTTPRequestHandler) -> None:
    req.close_connection = True
    with suppress(OSError):
        req.connection.shutdown(socket.SHUT_RDWR)


def read_json(req: BaseHTTPRequestHandler) -> tuple[Any, str | None]:
    """The request's JSON body, or an error message."""
    try:
        length = int(req.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    raw = req.rfile.read(length) if length > 0 else b""
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, "request body is not valid JSON"


def bearer_or_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key")


# --- the server ------------------------------------------------------------------------------------------


class SimulatedAPIServer:
    """A local stand-in for one provider's API. Use as a context manager, or start()/stop().

    ``base_url`` is what the provider's SDK takes as its base URL. Faults, limits and the request log are
    reachable both from Python (the methods below) and over HTTP (``POST /_control``, ``GET /_requests``).
    """

    def __init__(self, dialect: Dialect, *, host: str = "127.0.0.1", port: int = 0, rpm: int | None = None,
                 tpm: int | None = None, api_key: str | None = None, context_window: int | None = None,
                 models: list[str] | None = None, delay_s: float = 0.0) -> None:
        self.dialect = dialect
        self.limiter = SlidingWindowLimiter(rpm, tpm)
        self.faults = FaultPlan()
        self.faults.set_delay(delay_s)
        self.log = RequestLog()
        self.api_key, self.context_window = api_key, context_window
        self.models = list(models or [])
        self._addr = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # lifecycle

    def start(self) -> SimulatedAPIServer:
        self._httpd = _HTTPServer(self._addr, self)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"localapi-{self.dialect.name}", daemon=True)
        self._thread.start()
        log.info("simulated %s API listening on %s", self.dialect.name, self.base_url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping on an injected delay
        self._httpd.shutdown()
        self._httpd.close_all()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> SimulatedAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._addr[0]}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.dialect.base_path

    # Python control API (the same operations as POST /_control)

    def fail_next(self, count: int = 1, *, status: int = 500, retry_after: float | None = None,
                  message: str | None = None) -> None:
        self.faults.add(Fault("status", count, status=status, retry_after=retry_after, message=message))

    def drop_next(self, count: int = 1) -> None:
        self.faults.add(Fault("drop", count))

    def malformed_next(self, count: int = 1, *, kind: str = "non_json") -> None:
        self.faults.add(Fault("malformed", count, malformed=kind))

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        self.faults.add(Fault("delay", count, delay_s=seconds))

    def set_delay(self, seconds: float) -> None:
        self.faults.set_delay(seconds)

    def set_limits(self, *, rpm: int | None, tpm: int | None) -> None:
        self.limiter.configure(rpm, tpm)

    def reset(self) -> None:
        """Forget faults, the standing delay, the limiter's window and the request log."""
        self.faults.reset()
        self.limiter.clear()
        self.log.clear()

    def requests(self) -> list[RequestRecord]:
        return self.log.records()

    def saw_prompt(self, text: str) -> bool:
        return self.log.saw_prompt(text)

    @property
    def rate_limited_count(self) -> int:
        """How many 429s this server has sent (limiter and injected alike)."""
        return self.log.count_status(429)

    def state(self) -> dict[str, Any]:
        return {"dialect": self.dialect.name, "limits": asdict(self.limiter.snapshot()),
                "delay_s": self.faults.delay_s, "pending_faults": self.faults.pending(),
                "rate_limited": self.rate_limited_count, "requests": len(self.log.records())}

    def apply_control(self, command: Mapping[str, Any]) -> None:
        """One control command: {"action": "fail_next", "count": 2, "status": 503, ...}."""
        args = {k: v for k, v in command.items() if k != "action"}
        actions: dict[str, Callable[..., None]] = {
            "fail_next": self.fail_next, "drop_next": self.drop_next, "malformed_next": self.malformed_next,
            "delay_next": self.delay_next, "set_delay": self.set_delay, "set_limits": self.set_limits,
            "reset": self.reset, "reset_faults": self.faults.reset, "clear_log": self.log.clear,
            "set_context_window": lambda tokens: setattr(self, "context_window", tokens),
        }
        action = actions.get(str(command.get("action")))
        if action is None:
            raise ValueError(f"unknown action {command.get('action')!r}; one of {sorted(actions)}")
        if "count" in args:
            args["count"] = int(args["count"])
        action(**args)

    # request handling

    def handle(self, req: _Handler) -> None:
        path = req.path.split("?", 1)[0]
        body, bad_json = read_json(req)
        if path == "/_requests" and req.command == "GET":
            send_json(req, 200, {"requests": [asdict(r) for r in self.log.records()],
                                 "rate_limited": self.rate_limited_count})
        elif path == "/_control":
            self._control(req, body, bad_json)
        elif path == self.dialect.completion_path and req.command == "POST":
            self._model_call(req, path, body, bad_json)
        else:  # logged like model calls; only the harness's own /_control and /_requests are not
            rid = self.dialect.new_request_id()
            record = RequestRecord(time=time.time(), method=req.command, path=path, request_id=rid)
            if path == self.dialect.models_path and req.command == "GET":
                record.status, record.outcome, payload = 200, "ok", self.dialect.models_body(self.models)
            else:
                record.status, record.outcome = 404, "rejected"
                payload = self.dialect.error_body(404, f"Unknown route {req.command} {path}", rid)
            self.log.add(record)
            send_json(req, record.status, payload, {self.dialect.request_id_header: rid})

    def _control(self, req: _Handler, body: Any, bad_json: str | None) -> None:
        if req.command == "POST":
            commands = body if isinstance(body, list) else [body]
            try:
                if bad_json or not all(isinstance(c, dict) for c in commands):
                    raise ValueError(bad_json or "expected a JSON object or a list of objects")
                for command in commands:
                    self.apply_control(command)
            except (TypeError, ValueError) as exc:
                send_json(req, 400, {"error": str(exc)})
                return
        send_json(req, 200, self.state())

    def _model_call(self, req: _Handler, path: str, body: Any, bad_json: str | None) -> None:
        rid = self.dialect.new_request_id()
        record = RequestRecord(time=time.time(), method=req.command, path=path, request_id=rid)
        self._describe(record, body)
        fault, delay = self.faults.take()
        answer = self._decide(req, body, bad_json, rid, fault)  # limits are charged here, on arrival
        record.status, record.outcome = answer.status, answer.outcome
        self.log.add(record)
        if (delay > 0 and self._stopping.wait(delay)) or answer.status is None:
            return drop_connection(req)  # a dropped-connection fault, or the server is stopping mid-delay
        send_json(req, answer.status, answer.body, {self.dialect.request_id_header: rid, **answer.headers},
                  raw=answer.raw, content_type=answer.content_type)

    def _decide(self, req: _Handler, body: Any, bad_json: str | None, rid: str,
                fault: Fault | None) -> _Answer:
        d = self.dialect

        def error(status: int, message: str, outcome: str, headers: Mapping[str, str] | None = None,
                  **kw: Any) -> _Answer:
            return _Answer(status, outcome, d.error_body(status, message, rid, **kw), dict(headers or {}))

        if fault is not None and fault.kind == "drop":
            return _Answer(None, "dropped")
        if fault is not None and fault.kind == "status":
            wait = fault.retry_after
            after = {} if wait is None else {"retry-after": _retry_after_value(wait)}
            msg = fault.message or f"[simulated] injected fault: HTTP {fault.status}"
            return error(fault.status, msg, "fault", after, kind="requests" if fault.status == 429 else None)
        key = bearer_or_key(req.headers)
        if not key or (self.api_key is not None and key != self.api_key):
            return error(401, "[simulated] Incorrect API key provided.", "rejected", code="invalid_api_key")
        try:
            if bad_json:
                raise DialectError(400, bad_json)
            call = d.parse(body, req.headers, self.context_window)
        except DialectError as exc:
            return error(exc.status, exc.message, "rejected", code=exc.code, param=exc.param)
        if fault is not None and fault.kind == "malformed":
            if fault.malformed == "wrong_shape":
                return _Answer(200, "malformed", d.wrong_shape_body(call))
            if fault.malformed == "html":
                return _Answer(200, "malformed", raw=b"<html><body>502 Bad Gateway [simulated]</body></html>",
                               content_type="text/html")
            return _Answer(200, "malformed", raw=b'{"id": "truncated')  # JSON content type, cut short
        done = simulate(call, context_window=self.context_window)
        admission = self.limiter.admit(done.prompt_tokens + done.completion_tokens)
        limit_headers = d.limit_headers(admission.snapshot)
        if admission.ok:
            return _Answer(200, "ok", d.success_body(call, done), limit_headers)
        limit_headers["retry-after"] = _retry_after_value(admission.retry_after_s)
        what = admission.exhausted or "requests"
        limit = self.limiter.rpm if what == "requests" else self.limiter.tpm
        msg = (f"[simulated] Rate limit reached for {call.model} on {what} per min: Limit {limit}. "
               f"Please try again in {admission.retry_after_s:.3f}s.")
        return error(429, msg, "rate_limited", limit_headers, code="rate_limit_exceeded", kind=what)

    def _describe(self, record: RequestRecord, body: Any) -> None:
        """What the log keeps of a prompt: hashes and a short head, never the whole text."""
        texts = prompt_texts(body)
        model = body.get("model") if isinstance(body, dict) else None
        record.model = None if model is None else str(model)
        if texts:
            joined = "\n".join(texts)
            record.prompt_sha256 = prompt_hash(joined)
            record.message_sha256 = [prompt_hash(t) for t in texts]
            record.prompt_head = joined[:PROMPT_HEAD_CHARS]


@dataclass(slots=True)
class _Answer:
    status: int | None  # None: drop the connection without a response
    outcome: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


def _retry_after_value(seconds: float) -> str:
    """Retry-After is whole seconds; round up so a client that honours it is never early."""
    return str(max(1, math.ceil(seconds)))
