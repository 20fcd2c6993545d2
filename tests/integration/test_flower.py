"""`switchyard flower` behind its login, in real headless Chromium: the running workers and every model queue.

Chromium is driven over the Chrome DevTools protocol with tornado's websocket client (tornado comes with
Flower), so no browser-automation package or downloaded browser build is needed: only Debian's `chromium`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchyard.errors import ConfigError
from switchyard.flower import AUTH_ENV, resolve_auth, start_flower, wait_ready
from switchyard.settings import Settings
from tests.workerproc import WorkerHandle, reap, start_worker, worker_env

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "s3cret,with:odd chars"
AUTH = f"{USER}:{PASSWORD}"
WORKER_MODELS = ("llama-3-70b", "mistral-7b")
ALL_QUEUES = ("llama-3-70b", "mistral-7b", "gpt-4-turbo", "claude-3-opus")
BACKLOG_QUEUE = "gpt-4-turbo"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium binary on PATH: `apt-get install -y chromium` to run the browser check")


@pytest.fixture
def workers(database_url: str, clean_redis: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Model -> Celery node name of a running simulated worker."""
    env = worker_env(clean_redis, database_url)
    handles: list[WorkerHandle] = []
    try:
        for model in WORKER_MODELS:
            handles.append(start_worker(model, env, tmp_path, name=f"{model}-flower", concurrency=2))
        yield {model: f"{model}-flower@test" for model in WORKER_MODELS}
    finally:
        # Both at once: each takes a few seconds to shut down warm.
        for handle in handles:
            handle.proc.send_signal(signal.SIGTERM)
        for handle in handles:
            reap(handle.proc)


@pytest.fixture
def backlog(clean_redis: str) -> int:
    """Messages waiting on gpt-4-turbo (no worker consumes it here), two of them on a priority sub-list.

    kombu keeps priority 7 of queue Q in the list "Q\\x06\\x167"; Flower's default priority steps (0, 3, 6, 9)
    would not count it, the workers' own transport options do.
    """
    import redis

    client = redis.Redis.from_url(clean_redis)
    client.lpush(BACKLOG_QUEUE, "{}", "{}", "{}")
    client.lpush(f"{BACKLOG_QUEUE}\x06\x167", "{}", "{}")
    client.close()
    return 5


@pytest.fixture
def flower(database_url: str, clean_redis: str, backlog: int, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    settings = Settings.from_env({}).with_urls(clean_redis, database_url)
    log = tmp_path / "flower.log"
    proc = start_flower(settings, port, AUTH, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, AUTH, timeout=30, proc=proc)
        yield url
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        reap(proc)


def test_flower_needs_credentials_and_counts_every_model_queue(flower: str, backlog: int,
                                                                 tmp_path: Path) -> None:
    with httpx.Client(trust_env=False, timeout=5) as http:
        for path in ("/workers", "/broker", "/api/workers", "/api/queues/length"):
            assert http.get(flower + path).status_code == 401, path
            assert http.get(flower + path, auth=(USER, "wrong")).status_code == 401, path
        response = http.get(flower + "/api/queues/length", auth=(USER, PASSWORD))
    assert response.status_code == 200
    lengths = {q["name"]: q["messages"] for q in response.json()["active_queues"]}
    assert lengths == {q: backlog if q == BACKLOG_QUEUE else 0 for q in ALL_QUEUES}
    # `switchyard flower` printed every model's depth at start, priority sub-lists included.
    output = (tmp_path / "flower.log").read_text()
    assert re.search(rf"^{BACKLOG_QUEUE}\s+{backlog}$", output, re.M), output
    assert re.search(r"^claude-3-opus\s+0$", output, re.M), output
    assert PASSWORD not in output


def test_auth_comes_from_the_flag_else_the_environment_else_a_fresh_password() -> None:
    configured = Settings.from_env({AUTH_ENV: "env:pw"}).flower_auth
    assert resolve_auth("flag:pw", configured) == ("flag:pw", False)
    assert resolve_auth(None, configured) == ("env:pw", False)
    first, generated = resolve_auth(None, None)
    second, _ = resolve_auth(None, None)
    assert generated and first.startswith("admin:") and len(first) > 20 and first != second
    for bad in ("nopassword", "user:", ":pw"):
        with pytest.raises(ConfigError, match=AUTH_ENV):
            resolve_auth(bad, None)
        with pytest.raises(ConfigError, match=AUTH_ENV):
            resolve_auth(None, bad)


# --- a minimal Chrome DevTools protocol client ------------------------------------------------------------


class Page:
    """One browser tab; HTTP auth challenges are answered like a user at the login prompt (or cancelled)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.credentials: tuple[str, str] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._post(method, params)] = future
        return await asyncio.wait_for(future, 15)

    def _post(self, method: str, params: dict[str, Any]) -> int:
        msg_id = next(self._ids)
        self.ws.write_message(json.dumps({"id": msg_id, "method": method, "params": params}))
        return msg_id

    async def _read(self) -> None:
        while (raw := await self.ws.read_message()) is not None:
            msg = json.loads(raw)
            if "id" in msg:
                future = self._pending.pop(msg["id"], None)
                if future is not None and not future.done():
                    if "error" in msg:
                        future.set_exception(RuntimeError(f"CDP error: {msg['error']}"))
                    else:
                        future.set_result(msg.get("result", {}))
            elif msg.get("method") == "Fetch.requestPaused":
                self._post("Fetch.continueRequest", {"requestId": msg["params"]["requestId"]})
            elif msg.get("method") == "Fetch.authRequired":
                answer: dict[str, str] = {"response": "CancelAuth"}
                if self.credentials:
                    answer = {"response": "ProvideCredentials", "username": self.credentials[0],
                              "password": self.credentials[1]}
                self._post("Fetch.continueWithAuth",
                           {"requestId": msg["params"]["requestId"], "authChallengeResponse": answer})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, done: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        """The expression's value once ``done`` holds, or its last value when time runs out (to assert on)."""
        deadline = time.monotonic() + timeout
        value = await self.evaluate(expression)
        while not done(value) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            value = await self.evaluate(expression)
        return value

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def chromium_page(binary: str, profile: Path) -> AsyncIterator[Page]:
    from tornado.websocket import websocket_connect

    profile.mkdir()
    log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115 - closed below, after the process
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (profile.parent / "chromium.log").read_text(errors="replace")
                raise RuntimeError(f"Chromium did not start:\n{output[-2000:]}")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", trust_env=False).json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        ws = await websocket_connect(ws_url, max_message_size=64 << 20)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Fetch.enable", handleAuthRequests=True)
        yield page
        ws.close()
    finally:
        proc.terminate()
        reap(proc)
        log.close()


BODY_TEXT = "document.body ? document.body.innerText : ''"


def table_rows(selector: str) -> str:
    """JS for the cells' text of each row of a table, whitespace collapsed (the words a reader sees)."""
    return (f"Array.from(document.querySelectorAll({json.dumps(selector + ' tbody tr')}))"
            ".map(r => Array.from(r.cells).map(c => c.textContent.replace(/\\s+/g, ' ').trim()))")


def by_first_cell(rows: list[list[str]] | None) -> dict[str, list[str]]:
    return {row[0]: row for row in rows or [] if row}


def test_browser_logs_in_and_sees_workers_and_every_model_queue(
        chromium: str, workers: dict[str, str], flower: str, backlog: int, tmp_path: Path) -> None:
    names = sorted(workers.values())

    def all_online(rows: list[list[str]] | None) -> bool:
        shown = by_first_cell(rows)
        return all(len(shown.get(n, [])) > 1 and shown[n][1] == "Online" for n in names)

    async def visit() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with chromium_page(chromium, tmp_path / "profile") as page:
            await page.send("Page.navigate", url=f"{flower}/workers")
            seen["refused"] = await page.wait_for(BODY_TEXT, lambda t: "Access denied" in (t or ""))

            page.credentials = (USER, PASSWORD)
            await page.send("Page.navigate", url=f"{flower}/workers")
            # The server renders a bare table; the page's script then refreshes it live (status badges, the
            # summary cards) over authenticated XHR. Waiting for the badges makes a broken script fail here.
            seen["workers"] = await page.wait_for(table_rows("#workers-table"), all_online)
            seen["online"] = await page.evaluate("document.getElementById('workers-online').textContent")
            await page.screenshot(tmp_path / "flower-workers.png")

            await page.send("Page.navigate", url=f"{flower}/broker")
            seen["queues"] = await page.wait_for(table_rows("#queue-table"),
                                                 lambda r: set(ALL_QUEUES) <= set(by_first_cell(r)))
            await page.screenshot(tmp_path / "flower-broker.png")
        return seen

    seen = asyncio.run(visit())
    assert "Access denied" in seen["refused"], seen["refused"]
    assert not any(n in seen["refused"] for n in names)
    shown = by_first_cell(seen["workers"])
    for name in names:
        assert name in shown, f"worker {name} not listed: {seen['workers']}"
        assert shown[name][1] == "Online", f"worker {name} not shown online: {shown[name]}"
    assert seen["online"].strip() == str(len(names)), f"'Online workers' card shows {seen['online']!r}"
    queues = by_first_cell(seen["queues"])
    assert set(ALL_QUEUES) <= set(queues), f"broker page rows: {seen['queues']}"
    assert queues[BACKLOG_QUEUE][1] == str(backlog), f"{BACKLOG_QUEUE} row: {queues[BACKLOG_QUEUE]}"
    assert (tmp_path / "flower-workers.png").stat().st_size > 10_000


def test_ctrl_c_stops_flower_without_a_traceback(database_url: str, clean_redis: str) -> None:
    """Ctrl-C, then Ctrl-C again while Flower shuts down (its inspector threads are being joined): a clean exit,
    not "Exception ignored in: <module 'threading'> ... KeyboardInterrupt"."""
    import sys

    env = dict(worker_env(clean_redis, database_url), **{AUTH_ENV: AUTH})
    proc = subprocess.Popen([sys.executable, "-m", "switchyard.cli", "flower", "--port", str(_free_port())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Flower at"):
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # an impatient user presses it again
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 0
