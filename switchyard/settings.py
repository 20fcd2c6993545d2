"""Configuration read in one typed place, at start-up: the environment of the contract plus the catalog.

Nothing else in Switchyard reads ``os.environ`` for configuration; modules receive a :class:`Settings`. One
exception: ``SWITCHYARD_LOG_LEVEL``, the CLI's ``--log-level`` default, is read by the argument parser itself:
logging is set up before any command runs, and a Settings cannot be built that early (building one loads the
catalog, whose errors ``switchyard.cli.main`` must catch and report).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from switchyard.catalog import Catalog, load_catalog
from switchyard.errors import ConfigError


def _default_state_dir() -> Path:
    # As root, embedded PostgreSQL runs as its own unprivileged user and opens up every directory above its
    # data to reach it: keep that away from /root.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/switchyard")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "switchyard"


N = TypeVar("N", int, float)


def _non_negative(get: Callable[[str], str | None], name: str, kind: type[N]) -> N | None:
    """``name`` parsed as ``kind``, or None when unset; anything else (not a number, negative, NaN or infinite)
    is a ConfigError naming the variable, raised at start-up rather than when the value is first used."""
    raw = get(name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0 (got {raw!r})")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything Switchyard is configured with."""

    broker_url: str | None  # SWITCHYARD_BROKER_URL; None = embedded Redis (CLI only)
    database_url: str | None  # SWITCHYARD_DATABASE_URL; None = embedded PostgreSQL (CLI only)
    config_path: str | None  # SWITCHYARD_CONFIG
    catalog: Catalog
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str | None = None
    state_dir: Path = field(default_factory=_default_state_dir)  # embedded services' data, demo output
    # SWITCHYARD_SIM_TIME_SCALE: wall seconds the simulated engine sleeps per modelled second (0 = as fast as the
    # CPU allows); tests and benchmarks speed workers up with it. None = the engine's default, real time.
    sim_time_scale: float | None = None
    # SWITCHYARD_SIM_DIE_AFTER: the simulated engine dies after this many completed requests (fault injection
    # for the failure tests); None or 0 = never.
    sim_die_after: int | None = None
    # SWITCHYARD_FLOWER_AUTH: Flower's user:password, when --basic-auth is not given. Its format is checked by
    # switchyard.flower.resolve_auth, with the flag's, and only there: a bad Flower password must not stop
    # workers or submits that never use it.
    flower_auth: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        config_path = get("SWITCHYARD_CONFIG")
        state = get("SWITCHYARD_STATE_DIR")
        return cls(
            broker_url=get("SWITCHYARD_BROKER_URL"),
            database_url=get("SWITCHYARD_DATABASE_URL"),
            config_path=config_path,
            catalog=load_catalog(config_path),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            anthropic_api_key=get("ANTHROPIC_API_KEY"),
            anthropic_base_url=get("ANTHROPIC_BASE_URL"),
            state_dir=Path(state) if state else _default_state_dir(),
            sim_time_scale=_non_negative(get, "SWITCHYARD_SIM_TIME_SCALE", float),
            sim_die_after=_non_negative(get, "SWITCHYARD_SIM_DIE_AFTER", int),
            flower_auth=get("SWITCHYARD_FLOWER_AUTH"),
        )

    def with_urls(self, broker_url: str, database_url: str) -> Settings:
        return replace(self, broker_url=broker_url, database_url=database_url)

    def require_urls(self) -> tuple[str, str]:
        """Broker and database URLs; a library user must configure them (only the CLI embeds services)."""
        missing = [n for n, v in (("SWITCHYARD_BROKER_URL", self.broker_url),
                                  ("SWITCHYARD_DATABASE_URL", self.database_url)) if not v]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} not set: set them or pass the URLs (the CLI starts "
                              "embedded services by itself; `switchyard services start` starts them and prints "
                              "their URLs; in Python, switchyard.services.ensure_services)")
        return self.broker_url, self.database_url  # type: ignore[return-value]

    def provider_env(self) -> dict[str, str]:
        """The provider variables to hand to a child process (worker) unchanged."""
        pairs = {
            "OPENAI_API_KEY": self.openai_api_key, "OPENAI_BASE_URL": self.openai_base_url,
            "ANTHROPIC_API_KEY": self.anthropic_api_key, "ANTHROPIC_BASE_URL": self.anthropic_base_url,
        }
        return {k: v for k, v in pairs.items() if v}
