"""`RegistryConfig` refuses unusable values and names the field to fix."""

from __future__ import annotations

from typing import Any

import pytest

from sd_core import ConfigError, RegistryConfig

# (field, bad value)
BAD: list[tuple[str, Any]] = [
    ("health_check_interval", 0),
    ("health_check_interval", -1.0),
    ("health_check_interval", float("nan")),
    ("health_check_interval", float("inf")),
    ("health_check_timeout", 0),
    ("health_check_timeout", 31.0),  # longer than the default interval
    ("success_threshold", 0),
    ("success_threshold", 1.5),
    ("success_threshold", True),
    ("failure_threshold", 0),
    ("failure_threshold", -2),
    ("registration_ttl", 0),
    ("registration_ttl", -180),
    ("registration_ttl", float("-inf")),
    ("registration_ttl", "180"),
    ("registration_ttl", None),
    ("deregister_unhealthy_after", -1),
    ("watch_load_delta", -0.1),
    ("watch_load_delta", 1.5),
    ("self_preservation_threshold", 1.0),
    ("self_preservation_threshold", -0.1),
    ("self_preservation_threshold", 50),
    ("self_preservation_min_instances", -1),
    ("self_preservation_min_instances", 2.5),
    ("self_preservation_max_seconds", 0),
    ("max_instances", 0),
    ("max_instances", 10.0),
    ("max_body_bytes", 0),
    ("probe_max_body_bytes", 0),
    ("probe_max_body_bytes", False),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_bad_values_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        RegistryConfig(**{field: value})
    assert raised.value.name == field
    assert str(raised.value).startswith(f"{field}: ")
    assert raised.value.message
    assert isinstance(raised.value, ValueError)


def test_timeout_longer_than_interval_names_the_timeout() -> None:
    with pytest.raises(ConfigError) as raised:
        RegistryConfig(health_check_interval=2, health_check_timeout=3)
    assert raised.value.name == "health_check_timeout"


GOOD: list[dict[str, Any]] = [
    {},
    {"self_preservation_threshold": 0},
    {"self_preservation_threshold": 0.99},
    {"self_preservation_min_instances": 0},
    {"deregister_unhealthy_after": 0},
    {"deregister_unhealthy_after": 0.5},
    {"watch_load_delta": 0},
    {"watch_load_delta": 1},
    {"health_check_interval": 5, "health_check_timeout": 5},
    {"health_check_interval": 0.01, "health_check_timeout": 0.01},
    {"success_threshold": 10, "failure_threshold": 10},
    {"max_instances": 1, "max_body_bytes": 1, "probe_max_body_bytes": 1},
]


@pytest.mark.parametrize("overrides", GOOD)
def test_good_values_are_accepted(overrides: dict[str, Any]) -> None:
    config = RegistryConfig(**overrides)
    for name, value in overrides.items():
        assert getattr(config, name) == value


def test_defaults_match_the_documentation() -> None:
    config = RegistryConfig()
    assert (config.health_check_interval, config.health_check_timeout) == (30, 5)
    assert (config.success_threshold, config.failure_threshold) == (1, 2)
    assert config.registration_ttl == 180
    assert config.deregister_unhealthy_after == 0
    assert config.watch_load_delta == 0.1
    assert config.self_preservation_threshold == 0.5
    assert config.self_preservation_min_instances == 10
    assert config.self_preservation_max_seconds == 900
    assert config.max_instances == 100_000
    assert config.max_body_bytes == 65_536
    assert config.probe_max_body_bytes == 65_536


def test_config_is_frozen() -> None:
    config = RegistryConfig()
    with pytest.raises(AttributeError):
        config.registration_ttl = 1  # type: ignore[misc]
