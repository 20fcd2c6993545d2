"""The producer side: classification, routing, the Python client and bulk submission."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producer.client import Client

__all__ = ["Client"]


def __getattr__(name: str):  # lazy: `from producer import Client` without importing SQLAlchemy for pii users
    if name == "Client":
        from producer.client import Client

        return Client
    raise AttributeError(name)
