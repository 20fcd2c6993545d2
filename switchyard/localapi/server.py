"""Shared machinery of the local simulated provider APIs: rate limits, faults, request log, HTTP plumbing.

One :class:`SimulatedAPIServer` serves one wire dialect (OpenAI or Anthropic, see the sibling modules). The
stdlib threaded HTTP server is enough: one thread per connection, HTTP/1.1 keep-alive with Content-Length,
and everything the tests need to observe is in memory and guarded by locks.
"""
from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from switchyard.localapi.faults import Fault, FaultPlan, RequestLog, RequestRecord
from switchyard.localapi.limits import WINDOW_S, LimitSnapshot, SlidingWindowLimiter
from switchyard.localapi.protocol import (
    MALFORMED_KINDS,
    PROMPT_HEAD_CHARS,
    SIMULATED_HEADER,
    Completion,
    Dialect,
    DialectError,
    ParsedCall,
    prompt_hash,
    prompt_texts,
    prompt_tokens_of,
    simulate,
)

__all__ = [  # re-exported: the dialect modules and tests import them from here
    "MALFORMED_KINDS", "SIMULATED_HEADER", "WINDOW_S", "Completion", "Dialect", "DialectError", "Fault",
    "FaultPlan", "LimitSnapshot", "ParsedCall", "RequestLog", "RequestRecord", "SimulatedAPIServer",
    "SlidingWindowLimiter", "prompt_hash", "prompt_texts", "prompt_tokens_of", "simulate",
]

log = logging.getLogger(__name__)



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
