"""The Python client without services: building it and classifying need no URLs; methods that need the broker or
the database say which variables are missing, when called."""

from __future__ import annotations

import pytest

from producer import Client
from switchyard.errors import ConfigError

JOB = {"custom_id": "x", "prompt": "Summarise this contract for Maria Gonzalez"}


@pytest.fixture
def no_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWITCHYARD_BROKER_URL", "SWITCHYARD_DATABASE_URL", "SWITCHYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_urls")
def test_client_builds_and_classifies_without_urls() -> None:
    client = Client()
    decision = client.classify(JOB)
    assert decision.contains_pii and decision.model in ("llama-3-70b", "mistral-7b")
    assert decision.queue == decision.model
    client.close()  # nothing was opened: nothing to close, and no error


@pytest.mark.usefixtures("no_urls")
def test_methods_needing_services_name_the_missing_variables() -> None:
    client = Client()
    with pytest.raises(ConfigError, match="SWITCHYARD_BROKER_URL and SWITCHYARD_DATABASE_URL not set"):
        client.submit(JOB)
    with pytest.raises(ConfigError, match="SWITCHYARD_BROKER_URL and SWITCHYARD_DATABASE_URL not set"):
        client.submit_many([JOB])
    with pytest.raises(ConfigError, match="^SWITCHYARD_DATABASE_URL not set"):
        Client(broker_url="redis://127.0.0.1:1/0").status("some-batch")


@pytest.mark.usefixtures("no_urls")
def test_keyword_urls_still_configure_the_client() -> None:
    client = Client(broker_url="redis://127.0.0.1:1/0", database_url="postgresql+psycopg://u@127.0.0.1:1/db")
    assert (client.settings.broker_url, client.settings.database_url) == (
        "redis://127.0.0.1:1/0", "postgresql+psycopg://u@127.0.0.1:1/db")
