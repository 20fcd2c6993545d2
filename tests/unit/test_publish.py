"""Celery protocol-2 messages built from the template: what kombu and a worker read back out of them."""

from __future__ import annotations

import base64
import json
import uuid

from producer.publish import build_message, queue_key


def _decoded(job_id: str, queue: str = "llama-3-70b", priority: int = 0) -> dict:
    return json.loads(build_message(job_id, queue, priority, "123@host"))


def test_body_holds_exactly_the_job_id_for_any_id_length() -> None:
    for job_id in (str(uuid.uuid4()), "short", "x" * 37, "ünïcode-id"):  # base64 shortcut and its fallback
        msg = _decoded(job_id)
        args, kwargs, embed = json.loads(base64.b64decode(msg["body"]))
        assert args == [job_id] and kwargs == {} and embed["chain"] is None
        assert msg["headers"]["id"] == msg["headers"]["root_id"] == job_id
        assert msg["headers"]["argsrepr"] == repr((job_id,))


def test_routing_and_priority_follow_the_queue() -> None:
    msg = _decoded(str(uuid.uuid4()), "mistral-7b", 9)
    assert msg["properties"]["delivery_info"] == {"exchange": "", "routing_key": "mistral-7b"}
    assert queue_key("mistral-7b", 9).startswith("mistral-7b")
    assert msg["headers"]["origin"] == "123@host" and msg["headers"]["ignore_result"] is True


def test_delivery_tags_are_unique_and_uuid_shaped() -> None:
    tags = [_decoded(str(uuid.uuid4()))["properties"]["delivery_tag"] for _ in range(5000)]
    assert len(set(tags)) == len(tags)
    assert all(uuid.UUID(tag) for tag in tags)
