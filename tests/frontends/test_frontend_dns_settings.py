"""`SERVICE_DISCOVERY_DNS_*`: off by default, checked like every other setting."""

from __future__ import annotations

import pytest

from frontends.runtime.dns_settings import DnsSettings, load_dns_settings
from sd_core import ConfigError
from sd_core.dns import DnsConfig


def test_off_unless_a_port_is_given() -> None:
    assert load_dns_settings({}) is None
    assert load_dns_settings({"SERVICE_DISCOVERY_DNS_PORT": " "}) is None


def test_the_defaults() -> None:
    assert load_dns_settings({"SERVICE_DISCOVERY_DNS_PORT": "8600"}) == DnsSettings(
        8600, DnsConfig()
    )


def test_every_setting_is_read() -> None:
    settings = load_dns_settings(
        {
            "SERVICE_DISCOVERY_DNS_PORT": "0",
            "SERVICE_DISCOVERY_DNS_DOMAIN": "Consul.Example",
            "SERVICE_DISCOVERY_DNS_TTL": "5",
            "SERVICE_DISCOVERY_DNS_CACHE_BYTES": "0",
            "SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS": "3",
            "SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS": "2.5",
            "SERVICE_DISCOVERY_DNS_MAX_TCP_QUERY_BYTES": "1024",
            "SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE": "0.5",
        }
    )
    assert settings == DnsSettings(
        0, DnsConfig(domain="Consul.Example.", ttl=5, cache_bytes=0), 3, 2.5, 1024, 0.5
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVICE_DISCOVERY_DNS_PORT", "65536"),
        ("SERVICE_DISCOVERY_DNS_PORT", "-1"),
        ("SERVICE_DISCOVERY_DNS_PORT", "dns"),
        ("SERVICE_DISCOVERY_DNS_DOMAIN", "."),
        ("SERVICE_DISCOVERY_DNS_DOMAIN", "a..b"),
        ("SERVICE_DISCOVERY_DNS_TTL", "-1"),
        ("SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS", "0"),
        ("SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS", "0"),
        ("SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS", "inf"),
        ("SERVICE_DISCOVERY_DNS_MAX_TCP_QUERY_BYTES", "100"),
        ("SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", "0"),
        ("SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", "1.5"),
        ("SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", "a lot"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_dns_settings({"SERVICE_DISCOVERY_DNS_PORT": "8600", name: value})
    assert raised.value.name == name
