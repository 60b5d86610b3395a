"""Start-up configuration: the contract's defaults, flags over environment, one clear error
naming the variable for a bad value, secrets never shown."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

import pytest

from ingest.settings import BadSetting, Settings, mask_url


def load(
    env: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
) -> Settings:
    return Settings.load(env or {}, flags or {})


def test_defaults_serve_a_local_rabbitmq() -> None:
    settings = load()
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.redis_url is None
    assert settings.namespace == "postbacks"
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.max_body == 65536
    assert settings.basic_auth is None
    assert settings.allow_from == ()
    assert settings.confirm_timeout == 5
    assert settings.spool_dir is None
    assert settings.dedup_ttl == 604800
    assert settings.metrics_port == 9101


def test_defaults_do_not_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_PORT", "9999")
    assert load().port == 8080
    assert Settings.load(None, {}).port == 9999  # None means os.environ


def test_every_variable_is_read() -> None:
    settings = load(
        {
            "AMQP_URL": "amqps://pb:s3cret@rabbit.internal:5671/prod",
            "REDIS_URL": "redis://:r3dis@redis.internal:6379/2",
            "POSTBACKS_NAMESPACE": "acme.pb",
            "INGEST_HOST": "127.0.0.1",
            "INGEST_PORT": "8443",
            "INGEST_MAX_BODY": "1024",
            "INGEST_BASIC_AUTH": "sinch:pa:ss",
            "INGEST_ALLOW_FROM": "203.0.113.0/24, 198.51.100.7,2001:db8::/32",
            "INGEST_CONFIRM_TIMEOUT": "2.5",
            "INGEST_SPOOL_DIR": "/var/spool/postbacks",
            "DEDUP_TTL": "3600",
            "DLR_TIMEOUT": "600",
            "WORKER_METRICS_PORT": "9200",
        }
    )
    assert settings.dlr_timeout == 600
    assert settings.amqp_url == "amqps://pb:s3cret@rabbit.internal:5671/prod"
    assert settings.redis_url == "redis://:r3dis@redis.internal:6379/2"
    assert settings.namespace == "acme.pb"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8443
    assert settings.max_body == 1024
    assert settings.basic_auth == ("sinch", "pa:ss")  # a password may hold a colon
    assert settings.allow_from == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("198.51.100.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.confirm_timeout == 2.5
    assert settings.spool_dir == Path("/var/spool/postbacks")
    assert settings.dedup_ttl == 3600
    assert settings.metrics_port == 9200


def test_flag_wins_over_the_environment() -> None:
    env = {"INGEST_PORT": "8081", "POSTBACKS_NAMESPACE": "from-env"}
    settings = load(env, {"INGEST_PORT": "8082", "POSTBACKS_NAMESPACE": None})
    assert settings.port == 8082
    assert settings.namespace == "from-env"  # a flag not given leaves the variable


def test_empty_variable_means_its_default() -> None:
    assert load({"INGEST_PORT": "", "AMQP_URL": "  "}).port == 8080
    assert load({"AMQP_URL": "  "}).amqp_url == "amqp://guest:guest@127.0.0.1:5672/"


def test_surrounding_white_space_of_a_variable_is_ignored() -> None:
    assert load({"INGEST_PORT": " 8081\n"}).port == 8081


def test_redis_url_schemes() -> None:
    assert load({"REDIS_URL": "rediss://h:6380/0"}).redis_url == "rediss://h:6380/0"
    assert load({"REDIS_URL": "unix:///run/redis.sock"}).redis_url == "unix:///run/redis.sock"


@pytest.mark.parametrize(
    "url",
    [
        "redis://h",
        "redis://h/",
        "redis://h:6379/0",
        "redis://h:6379/15",
        "redis://h:6379/99999",  # the server says whether it has it: the worker reports that
        "redis://:pw@h:6379/2?socket_timeout=1.5&health_check_interval=10",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_redis_urls_redis_py_reads_as_written_are_accepted(url: str) -> None:
    assert load({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AMQP_URL", "not a url"),
        ("AMQP_URL", "http://guest:guest@127.0.0.1:5672/"),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:99999/"),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:port/"),
        ("AMQP_URL", "amqp:///"),
        ("AMQP_URL", "amqp://[::1/"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "redis://localhost:70000/0"),
        ("REDIS_URL", "amqp://localhost/"),
        ("REDIS_URL", "redis://localhost:6379/?socket_timeout=abc"),
        ("REDIS_URL", "redis://localhost:6379/?db=two"),
        ("REDIS_URL", "redis://localhost:6379/abc"),
        ("REDIS_URL", "redis://localhost:6379/-1"),
        ("REDIS_URL", "redis://localhost:6379/1/2"),
        ("REDIS_URL", "redis://localhost:6379/99999999999"),
        ("REDIS_URL", "unix://"),
        ("REDIS_URL", "unix:///run/redis.sock?db=x"),
        ("POSTBACKS_NAMESPACE", "my namespace"),
        ("POSTBACKS_NAMESPACE", "#"),
        ("INGEST_PORT", "65536"),
        ("INGEST_PORT", "-1"),
        ("INGEST_PORT", "http"),
        ("INGEST_PORT", "80.5"),
        ("INGEST_MAX_BODY", "64k"),
        ("INGEST_MAX_BODY", "0"),
        ("INGEST_MAX_BODY", "-1"),
        ("INGEST_BASIC_AUTH", "sinch"),
        ("INGEST_BASIC_AUTH", "sinch:"),
        ("INGEST_BASIC_AUTH", ":secret"),
        ("INGEST_ALLOW_FROM", "10.0.0.0/33"),
        ("INGEST_ALLOW_FROM", "300.1.2.3/8"),
        ("INGEST_ALLOW_FROM", "10.0.0.0/8,office"),
        ("INGEST_ALLOW_FROM", ","),
        ("INGEST_CONFIRM_TIMEOUT", "soon"),
        ("INGEST_CONFIRM_TIMEOUT", "0"),
        ("INGEST_CONFIRM_TIMEOUT", "-5"),
        ("INGEST_CONFIRM_TIMEOUT", "nan"),
        ("INGEST_CONFIRM_TIMEOUT", "inf"),
        ("DEDUP_TTL", "a week"),
        ("DEDUP_TTL", "0"),
        ("DEDUP_TTL", "-604800"),
        ("WORKER_METRICS_PORT", "70000"),
        ("WORKER_METRICS_PORT", "nine"),
    ],
)
def test_bad_value_names_its_variable(variable: str, value: str) -> None:
    for env, flags in (({variable: value}, {}), ({}, {variable: value})):
        with pytest.raises(BadSetting) as caught:
            load(env, flags)
        assert caught.value.variable == variable
        message = str(caught.value)
        assert variable in message
        assert "\n" not in message  # one clear line


def test_bad_setting_is_a_value_error() -> None:
    assert issubclass(BadSetting, ValueError)


@pytest.mark.parametrize("port", ["1", "65535"])
def test_ports_at_the_edges_are_accepted(port: str) -> None:
    assert load({"INGEST_PORT": port, "WORKER_METRICS_PORT": port}).port == int(port)


def test_effective_configuration_masks_secrets() -> None:
    settings = load(
        {
            "AMQP_URL": "amqps://pb:s3cret@rabbit.internal:5671/prod?heartbeat=30",
            "REDIS_URL": "redis://:r3dis@redis.internal:6379/2",
            "INGEST_BASIC_AUTH": "sinch:hunter2",
            "INGEST_ALLOW_FROM": "203.0.113.0/24,2001:db8::/32",
        }
    )
    shown = settings.effective()
    assert shown["AMQP_URL"] == "amqps://pb:***@rabbit.internal:5671/prod?heartbeat=30"
    assert shown["REDIS_URL"] == "redis://:***@redis.internal:6379/2"
    assert shown["INGEST_BASIC_AUTH"] == "sinch:***"
    assert shown["INGEST_ALLOW_FROM"] == "203.0.113.0/24,2001:db8::/32"
    text = repr(shown)
    for secret in ("s3cret", "r3dis", "hunter2"):
        assert secret not in text


def test_effective_configuration_of_the_defaults() -> None:
    assert load().effective() == {
        "AMQP_URL": "amqp://guest:***@127.0.0.1:5672/",
        "REDIS_URL": None,
        "POSTBACKS_NAMESPACE": "postbacks",
        "INGEST_HOST": "0.0.0.0",
        "INGEST_PORT": "8080",
        "INGEST_MAX_BODY": "65536",
        "INGEST_BASIC_AUTH": None,
        "INGEST_ALLOW_FROM": None,
        "INGEST_CONFIRM_TIMEOUT": "5",
        "INGEST_SPOOL_DIR": None,
        "DEDUP_TTL": "604800",
        "DLR_TIMEOUT": "259200",
        "WORKER_METRICS_PORT": "9101",
        "LOG_LEVEL": "INFO",
        "HISTORY_MAX_AGE": None,
        "HISTORY_MAX_BYTES": "20000000000",
    }


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("amqp://guest@127.0.0.1:5672/", "amqp://guest@127.0.0.1:5672/"),
        ("amqp://127.0.0.1/", "amqp://127.0.0.1/"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("amqps://u:p%40ss@host/vhost?x=1", "amqps://u:***@host/vhost?x=1"),
        ("redis://user:pw@host", "redis://user:***@host"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_names_follow_the_namespace() -> None:
    names = load({"POSTBACKS_NAMESPACE": "acme"}).names
    assert (names.intake, names.events, names.unrouted, names.quarantine) == (
        "acme.intake",
        "acme.events",
        "acme.unrouted",
        "acme.quarantine",
    )
    assert names.subscriber("billing") == "acme.sub.billing"
    assert load().names.intake == "postbacks.intake"


# --- regressions: bugs found while writing these tests, now fixed -------------------------


def test_mask_url_keeps_an_ipv6_host_readable() -> None:
    assert mask_url("amqp://u:p@[::1]:5672/v") == "amqp://u:***@[::1]:5672/v"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AMQP_URL", "http://guest:s3cret@rabbit/"), ("REDIS_URL", "http://:s3cret@redis/")],
)
def test_bad_url_error_does_not_show_the_password(variable: str, value: str) -> None:
    with pytest.raises(BadSetting) as caught:
        load({variable: value})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"DLR_TIMEOUT": "604800"}, "below DEDUP_TTL"),
        ({"DEDUP_TTL": "3600"}, "below DEDUP_TTL"),
        ({"DLR_TIMEOUT": "-1"}, "out of range"),
        ({"DLR_TIMEOUT": "soon"}, "not an integer"),
    ],
)
def test_dlr_timeout_must_be_a_number_of_seconds_below_dedup_ttl(
    env: dict[str, str], words: str
) -> None:
    with pytest.raises(BadSetting, match=f"DLR_TIMEOUT: .*{words}"):
        load(env)


def test_dlr_timeout_zero_turns_timeouts_off() -> None:
    assert load({"DLR_TIMEOUT": "0", "DEDUP_TTL": "60"}).dlr_timeout == 0
