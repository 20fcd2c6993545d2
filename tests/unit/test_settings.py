"""Settings.from_env: the environment knobs are typed and validated at start-up, and reach their users."""

from __future__ import annotations

import pytest

from switchyard.errors import ConfigError
from switchyard.settings import Settings
from workers.worker import WorkerOptions, build_backend


def test_unset_knobs_are_none() -> None:
    settings = Settings.from_env({})
    assert (settings.sim_time_scale, settings.sim_die_after, settings.flower_auth) == (None, None, None)
    blank = Settings.from_env({"SWITCHYARD_SIM_TIME_SCALE": " ", "SWITCHYARD_SIM_DIE_AFTER": "",
                               "SWITCHYARD_FLOWER_AUTH": "  "})
    assert (blank.sim_time_scale, blank.sim_die_after, blank.flower_auth) == (None, None, None)


def test_simulation_knobs_are_parsed() -> None:
    settings = Settings.from_env({"SWITCHYARD_SIM_TIME_SCALE": " 0.05 ", "SWITCHYARD_SIM_DIE_AFTER": "40"})
    assert settings.sim_time_scale == 0.05 and isinstance(settings.sim_time_scale, float)
    assert settings.sim_die_after == 40 and isinstance(settings.sim_die_after, int)
    zero = Settings.from_env({"SWITCHYARD_SIM_TIME_SCALE": "0", "SWITCHYARD_SIM_DIE_AFTER": "0"})
    assert (zero.sim_time_scale, zero.sim_die_after) == (0.0, 0)


@pytest.mark.parametrize(("name", "raw"), [
    ("SWITCHYARD_SIM_TIME_SCALE", "fast"),
    ("SWITCHYARD_SIM_TIME_SCALE", "-0.5"),
    ("SWITCHYARD_SIM_TIME_SCALE", "nan"),
    ("SWITCHYARD_SIM_TIME_SCALE", "inf"),
    ("SWITCHYARD_SIM_DIE_AFTER", "soon"),
    ("SWITCHYARD_SIM_DIE_AFTER", "2.5"),
    ("SWITCHYARD_SIM_DIE_AFTER", "-1"),
])
def test_bad_simulation_knobs_are_config_errors_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_flower_auth_is_read_but_never_shown() -> None:
    settings = Settings.from_env({"SWITCHYARD_FLOWER_AUTH": "ops:s3cret-pw"})
    assert settings.flower_auth == "ops:s3cret-pw"
    assert "s3cret-pw" not in repr(settings)


def test_the_worker_builds_its_simulated_engine_from_settings() -> None:
    settings = Settings.from_env({"SWITCHYARD_SIM_TIME_SCALE": "0.25", "SWITCHYARD_SIM_DIE_AFTER": "7"})
    engine = build_backend(settings, WorkerOptions(model="llama-3-70b", engine="simulated"))
    assert (engine.time_scale, engine.die_after) == (0.25, 7)
    default = build_backend(Settings.from_env({}), WorkerOptions(model="llama-3-70b", engine="simulated"))
    assert (default.time_scale, default.die_after) == (1.0, None)
