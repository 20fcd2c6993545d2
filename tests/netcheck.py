"""Network checks shared by tests."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def refuses_connections(base_url: str) -> bool:
    """Whether nothing listens at ``base_url`` any more (a server that must have stopped)."""
    parts = urlsplit(base_url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return True
    return False
