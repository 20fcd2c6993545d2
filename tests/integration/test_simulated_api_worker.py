"""``switchyard worker gpt-4-turbo|claude-3-opus --engine simulated`` as a real process: a commercial queue drained
without API keys, through the API worker's own path, every result marked simulated, nothing sent to the
configured provider, nothing left running after the worker stops."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from producer.client import Client
from schemas.tables import LedgerEntry
from switchyard.db import get_engine
from switchyard.localapi import anthropic_server, openai_server
from tests.netcheck import refuses_connections
from tests.workerproc import start_worker, worker_env

PROMPT = "Prove that the square root of 2 is irrational, then explain how the proof generalises."
SERVER_LINE = re.compile(r"SIMULATED (\w+) API for \S+ on (\S+)")



@pytest.mark.parametrize(("model", "provider", "make_decoy"), [
    ("gpt-4-turbo", "openai", openai_server),
    ("claude-3-opus", "anthropic", anthropic_server),
])
def test_commercial_worker_with_simulated_engine(client: Client, db: str, clean_redis: str, tmp_path: Path,
                                                 model: str, provider: str, make_decoy) -> None:  # type: ignore[no-untyped-def]
    with make_decoy() as decoy:  # what a user's configured provider would be: must receive nothing
        prefix = provider.upper()
        env = worker_env(clean_redis, db, **{f"{prefix}_BASE_URL": decoy.base_url,
                                             f"{prefix}_API_KEY": "sk-a-real-looking-key"})
        worker = start_worker(model, env, tmp_path, engine="simulated", concurrency=4)
        try:
            found = SERVER_LINE.search(worker.output())
            assert found and found.group(1) == provider, worker.output()[-2000:]
            local_url = found.group(2)
            descendants = psutil.Process(worker.proc.pid).children(recursive=True)

            job_id = client.submit({"custom_id": f"sim-{model}", "prompt": PROMPT, "model": model,
                                    "max_tokens": 64})
            line = client.result(job_id, timeout=60)
        finally:
            code = worker.stop()
        assert decoy.requests() == [], "the configured provider was called"

    assert line["switchyard"]["state"] == "succeeded", line
    assert line["switchyard"]["model"] == model
    assert line["switchyard"]["simulated"] is True
    assert line["response"]["body"]["choices"][0]["message"]["content"].startswith("[simulated")
    with get_engine(db).connect() as conn:
        ledger = conn.execute(select(LedgerEntry.model, LedgerEntry.provider, LedgerEntry.simulated,
                                     LedgerEntry.output_tokens)).one()
    assert (ledger.model, ledger.provider, ledger.simulated) == (model, provider, True)
    assert ledger.output_tokens > 0

    assert code == 0, worker.output()[-2000:]
    assert not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert refuses_connections(local_url), "the simulated provider server outlived its worker"
