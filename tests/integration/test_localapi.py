"""The local simulated provider APIs over real sockets: wire shapes, limits, faults, request log."""

from __future__ import annotations

import math
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from switchyard.localapi import SimulatedAPIServer, SlidingWindowLimiter, anthropic_server, openai_server

KEY = {"Authorization": "Bearer test-key"}
ANTHROPIC_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2026-10-21"}
TIMEOUT = httpx.Timeout(2.0)


def chat(content: str = "Say hello", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4-turbo", "messages": [{"role": "user", "content": content}], **extra}


def message(content: str = "Say hello", **extra: Any) -> dict[str, Any]:
    return {"model": "claude-3-opus-20240229", "max_tokens": 100,
            "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
def oai() -> Iterator[tuple[SimulatedAPIServer, httpx.Client]]:
    with openai_server() as srv, httpx.Client(base_url=srv.url, headers=KEY, timeout=TIMEOUT) as client:
        yield srv, client


@pytest.fixture
def ant() -> Iterator[tuple[SimulatedAPIServer, httpx.Client]]:
    with anthropic_server() as srv, httpx.Client(base_url=srv.url, headers=ANTHROPIC_HEADERS,
                                                 timeout=TIMEOUT) as client:
        yield srv, client


# --- wire shapes ------------------------------------------------------------------------------------------


def test_openai_response_is_a_chat_completion_the_sdk_validates_strictly(oai: Any) -> None:
    srv, client = oai
    prompt = "What is the capital of France? Answer in one word."
    r = client.post("/v1/chat/completions", json=chat(prompt, max_tokens=200))
    assert r.status_code == 200
    completion = ChatCompletion.model_validate(r.json())  # strict: every required field, right types
    assert completion.choices[0].message.content.startswith("[simulated gpt-4-turbo]")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens == math.ceil(len(prompt) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert r.headers["x-switchyard-simulated"] == "true" and r.headers["x-request-id"].startswith("req_")
    assert client.get("/v1/models").json()["data"][0]["id"] == "gpt-4-turbo"


def test_anthropic_response_is_a_message_the_sdk_validates_strictly(ant: Any) -> None:
    srv, client = ant
    r = client.post("/v1/messages", json=message(max_tokens=3))
    assert r.status_code == 200
    msg = Message.model_validate(r.json())
    assert msg.content[0].text.startswith("[simulated claude-3-opus-20240229]")  # type: ignore[union-attr]
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3
    assert r.headers["x-switchyard-simulated"] == "true" and r.headers["request-id"].startswith("req_")


def test_same_prompt_same_answer_and_max_tokens_truncates(oai: Any) -> None:
    _, client = oai
    a, b = (client.post("/v1/chat/completions", json=chat("deterministic?")).json() for _ in range(2))
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    short = client.post("/v1/chat/completions", json=chat("deterministic?", max_tokens=2)).json()
    assert short["usage"]["completion_tokens"] == 2 and short["choices"][0]["finish_reason"] == "length"


def test_requests_the_real_apis_refuse_are_refused(ant: Any, oai: Any) -> None:
    srv, client = ant
    assert client.post("/v1/messages", json=message(temperature=0.5)).status_code == 400
    no_version = client.post("/v1/messages", json=message(), headers={"anthropic-version": ""})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/v1/messages", json=message(), headers={"x-api-key": ""}).status_code == 401
    osrv, oclient = oai
    osrv.context_window = 50
    r = oclient.post("/v1/chat/completions", json=chat("x" * 100, max_tokens=30))
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert oclient.post("/v1/chat/completions", content=b"{not json").status_code == 400
    assert oclient.post("/v1/nope", json={}).status_code == 404


def test_every_response_says_it_is_simulated(oai: Any) -> None:
    srv, client = oai
    srv.fail_next(status=503)
    responses = [client.post("/v1/chat/completions", json=chat()) for _ in range(2)]
    responses += [client.get("/v1/models"), client.get("/_requests"), client.post("/v1/nope"),
                  client.request("OPTIONS", "/v1/models")]  # the last one is the stdlib's own 501
    assert [r.status_code for r in responses] == [503, 200, 200, 200, 404, 501]
    assert all(r.headers["x-switchyard-simulated"] == "true" for r in responses)


def test_a_configured_key_is_enforced() -> None:
    with openai_server(api_key="right") as srv, httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:
        wrong = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer wrong"})
        right = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer right"})
    assert (wrong.status_code, right.status_code) == (401, 200)


# --- limits -----------------------------------------------------------------------------------------------


def test_rpm_limit_answers_429_with_retry_after_and_counts_them(oai: Any) -> None:
    srv, client = oai
    srv.set_limits(rpm=3, tpm=None)
    statuses = [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    r = client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 429 and 55 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "requests"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert srv.rate_limited_count == 3


def test_tpm_counts_the_usage_the_client_will_see(ant: Any) -> None:
    srv, client = ant
    srv.set_limits(rpm=None, tpm=200)
    first = client.post("/v1/messages", json=message("a" * 200, max_tokens=40))
    used = first.json()["usage"]["input_tokens"] + first.json()["usage"]["output_tokens"]
    assert int(first.headers["anthropic-ratelimit-tokens-remaining"]) == 200 - used
    reset = datetime.fromisoformat(first.headers["anthropic-ratelimit-tokens-reset"].replace("Z", "+00:00"))
    assert 55 <= reset.timestamp() - time.time() <= 61
    statuses = [client.post("/v1/messages", json=message("a" * 200, max_tokens=40)).status_code
                for _ in range(3)]
    assert statuses[-1] == 429 and srv.rate_limited_count >= 1
    last = client.post("/v1/messages", json=message("a" * 200, max_tokens=40))
    assert last.json()["error"]["type"] == "rate_limit_error" and "retry-after" in last.headers


def test_sliding_window_readmits_exactly_when_the_oldest_request_leaves() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(rpm=3, tpm=100, clock=lambda: now[0])
    assert limiter.admit(10).ok
    now[0] = 10.0
    assert limiter.admit(10).ok and limiter.admit(1).ok
    refused = limiter.admit(10)
    assert not refused.ok and refused.exhausted == "requests" and refused.retry_after_s == pytest.approx(50.0)
    now[0] = 60.0  # the first request has left the window
    limiter.configure(rpm=None, tpm=100)  # from here on, tokens alone
    assert limiter.admit(75).ok
    refused = limiter.admit(20)  # 10 + 1 + 75 + 20 > 100: waits for the two at t=10 to leave
    assert not refused.ok and refused.exhausted == "tokens" and refused.retry_after_s == pytest.approx(10.0)
    assert not limiter.admit(500).ok  # larger than the whole budget: never admitted


# --- faults -----------------------------------------------------------------------------------------------


def test_faults_set_over_http_hit_the_next_requests_only(oai: Any) -> None:
    srv, client = oai
    control = client.post("/_control", json={"action": "fail_next", "count": 2, "status": 429,
                                             "retry_after": 7})
    assert control.status_code == 200 and control.json()["pending_faults"][0]["count"] == 2
    first, second, third = (client.post("/v1/chat/completions", json=chat()) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["retry-after"] == "7" and first.headers["x-switchyard-simulated"] == "true"
    assert client.post("/_control", json={"action": "explode"}).status_code == 400


def test_control_commands_can_be_batched_and_reset(oai: Any) -> None:
    srv, client = oai
    commands = [{"action": "set_limits", "rpm": 1, "tpm": None}, {"action": "drop_next", "count": 3},
                {"action": "set_context_window", "tokens": 10}]
    state = client.post("/_control", json=commands).json()
    assert state["limits"]["requests_limit"] == 1 and state["pending_faults"][0]["kind"] == "drop"
    assert srv.context_window == 10
    client.post("/_control", json={"action": "reset_faults"})
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert client.post("/v1/chat/completions", json=chat()).status_code == 429


@pytest.mark.parametrize("status", [500, 503, 400, 401])
def test_injected_status_uses_the_dialect_error_shape(ant: Any, status: int) -> None:
    srv, client = ant
    srv.fail_next(status=status)
    r = client.post("/v1/messages", json=message())
    assert r.status_code == status and r.json()["type"] == "error" and r.json()["error"]["message"]


def test_dropped_connection_gets_no_response(oai: Any) -> None:
    srv, client = oai
    srv.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/chat/completions", json=chat())
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200


@pytest.mark.parametrize("kind", ["non_json", "html", "wrong_shape"])
def test_malformed_bodies(oai: Any, kind: str) -> None:
    srv, client = oai
    srv.malformed_next(kind=kind)
    r = client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200
    if kind == "wrong_shape":
        assert "choices" not in r.json()
    else:
        with pytest.raises(ValueError):
            r.json()


def test_delay_holds_the_response(oai: Any) -> None:
    srv, client = oai
    client.post("/_control", json={"action": "delay_next", "count": 1, "seconds": 0.3})
    started = time.perf_counter()
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    client.post("/v1/chat/completions", json=chat())
    assert time.perf_counter() - started < 0.3


# --- request log ------------------------------------------------------------------------------------------


def test_request_log_proves_what_reached_the_server(oai: Any) -> None:
    srv, client = oai
    client.post("/v1/chat/completions", json=chat("Order 1234 shipped to Paris"))
    client.post("/v1/chat/completions", json=chat("no key here"), headers={"Authorization": ""})
    assert srv.saw_prompt("Order 1234 shipped to Paris") and srv.saw_prompt("no key here")
    assert not srv.saw_prompt("Order 1234 shipped to Lyon")
    client.get("/v1/models")
    records = client.get("/_requests").json()["requests"]
    assert [(r["path"], r["status"], r["outcome"]) for r in records] == [
        ("/v1/chat/completions", 200, "ok"), ("/v1/chat/completions", 401, "rejected"),
        ("/v1/models", 200, "ok")]
    assert records[0]["prompt_head"] == "Order 1234 shipped to Pa" and records[0]["model"] == "gpt-4-turbo"
    assert "Paris" not in str(records[0]["prompt_sha256"]) and len(records[0]["prompt_sha256"]) == 64


# --- serving ----------------------------------------------------------------------------------------------


def test_fifty_concurrent_keep_alive_clients() -> None:
    with openai_server(delay_s=0.2) as srv:
        tls = ssl.create_default_context()  # one for all: building 50 costs more than the test itself
        clients = [httpx.Client(base_url=srv.url, headers=KEY, timeout=TIMEOUT, verify=tls)
                   for _ in range(50)]
        barrier = threading.Barrier(50)

        def two_requests(client: httpx.Client) -> list[int]:
            barrier.wait()
            return [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(2)]

        started = time.perf_counter()
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(two_requests, clients))
        elapsed = time.perf_counter() - started
        for client in clients:
            client.close()
    assert results == [[200, 200]] * 50
    # 100 responses held 0.2 s each take 20 s one at a time; two rounds of 50 in parallel take ~0.4 s.
    assert elapsed < 4.0


def test_a_stopped_server_stops_answering_kept_alive_connections() -> None:
    srv = openai_server().start()
    with httpx.Client(base_url=srv.url, headers=KEY, timeout=TIMEOUT) as client:
        assert client.post("/v1/chat/completions", json=chat()).status_code == 200
        srv.stop()
        with pytest.raises(httpx.TransportError):
            client.post("/v1/chat/completions", json=chat())


def test_runs_as_a_subprocess() -> None:
    argv = [sys.executable, "-m", "switchyard.localapi", "anthropic", "--port", "0", "--rpm", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("SWITCHYARD_LOCALAPI_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        with httpx.Client(base_url=url, headers=ANTHROPIC_HEADERS, timeout=TIMEOUT) as client:
            statuses = [client.post("/v1/messages", json=message()).status_code for _ in range(2)]
            assert statuses == [200, 429]
            assert client.get("/_requests").json()["rate_limited"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0  # SIGTERM is a clean stop
        proc.stdout.close()  # type: ignore[union-attr]
