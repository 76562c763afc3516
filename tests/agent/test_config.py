"""Configuration loading: the example files validate; every wrong input is refused with a message
naming the file, the field path and the reason."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from agent.config import ConfigError, interpolate, load_config, redact_url
from tests.agent.conftest import example_config, write_config

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "config"

INTEGRATION_ENV = {
    "MININGCORE_API_URL": "http://127.0.0.1:41000",
    "MININGCORE_METRICS_URL": "http://127.0.0.1:41000/metrics",
    "MININGCORE_DB_DSN": "postgresql://postgres@127.0.0.1:5999/mc_x",
    "MININGCORE_LOG_DIR": "/srv/pw/mc-logs",
    "ERGO_NODE_URL": "http://127.0.0.1:41001",
    "ERGO_NODE_API_KEY": "hello",
    "ERGO_NODE_DATA_DIR": "/srv/pw/ergo",
    "POOLWARDEN_BACKUP_DIR": "/srv/pw/backups",
    "POOLWARDEN_REDIS_URL": "redis://127.0.0.1:6399/0",
    "POOLWARDEN_SPOOL_DIR": "/srv/pw/spool",
    "POOLWARDEN_HOST": "pool-it",
    "DOCKER_HOST": "unix:///run/user/1000/docker.sock",
}


def test_example_files_validate_with_no_environment():
    config = load_config(EXAMPLE_DIR, env={})
    assert config.host == "pool-1"
    assert config.pool.miningcore.api_url == "http://127.0.0.1:4000"
    assert config.pool.miningcore.pool_ids == ()
    assert config.pool.ergo_node.api_key is None  # "${ERGO_NODE_API_KEY:-}" -> not set
    assert config.pool.paths.logs == ("/home/ergo/ergo-miningcore/logs",)
    assert config.monitoring.intervals.collect_seconds == 15
    assert config.monitoring.agent.spool_max_batches == 10_000
    assert "tmpfs" in config.monitoring.mounts.exclude_fs_types


def test_example_files_validate_with_the_integration_environment():
    config = load_config(EXAMPLE_DIR, env=INTEGRATION_ENV)
    assert config.host == "pool-it"
    assert config.pool.miningcore.api_url == "http://127.0.0.1:41000"
    assert config.pool.miningcore.metrics_url == "http://127.0.0.1:41000/metrics"
    assert config.pool.miningcore.database_dsn == "postgresql://postgres@127.0.0.1:5999/mc_x"
    assert config.pool.ergo_node.api_key == "hello"
    assert config.pool.ergo_node.data_dir == "/srv/pw/ergo"
    assert config.pool.paths.logs == ("/srv/pw/mc-logs",)
    assert config.pool.paths.backups == "/srv/pw/backups"
    assert config.pool.docker.socket == "unix:///run/user/1000/docker.sock"
    assert config.monitoring.agent.redis_url == "redis://127.0.0.1:6399/0"
    assert config.monitoring.agent.spool_dir == "/srv/pw/spool"


def test_config_dir_comes_from_the_environment_variable(tmp_path):
    pool, monitoring = example_config()
    pool["host"] = "from-env-dir"
    write_config(tmp_path, pool, monitoring)
    assert load_config(env={"POOLWARDEN_CONFIG_DIR": str(tmp_path)}).host == "from-env-dir"


def test_numeric_strings_after_interpolation_become_numbers(tmp_path):
    pool, monitoring = example_config()
    pool["miningcore"]["timeoutSeconds"] = "${MC_TIMEOUT:-2.5}"
    monitoring["intervals"]["collectSeconds"] = "${COLLECT:-15}"
    write_config(tmp_path, pool, monitoring)
    config = load_config(tmp_path, env={"COLLECT": "30"})
    assert config.pool.miningcore.timeout_seconds == 2.5
    assert config.monitoring.intervals.collect_seconds == 30


def test_interpolation_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a${SET}b", env, "f", "p") == "axb"
    assert interpolate("${EMPTY:-d}", env, "f", "p") == "d"  # ':-' also replaces an empty value
    assert interpolate("${UNSET:-}", env, "f", "p") == ""
    assert interpolate("pa$$word $HOME", env, "f", "p") == "pa$$word $HOME"  # only ${...} is special


def test_summary_never_shows_secrets(tmp_path):
    env = dict(INTEGRATION_ENV, MININGCORE_DB_DSN="postgresql://mc:s3cret@db:5432/mc",
               POOLWARDEN_REDIS_URL="redis://agent:t0ken@127.0.0.1:6379/0")
    text = json.dumps(load_config(EXAMPLE_DIR, env=env).summary())
    assert "s3cret" not in text and "t0ken" not in text and "hello" not in text
    assert redact_url("redis://agent:t0ken@h:1/0") == "redis://agent:***@h:1/0"


def _set(doc: dict, path: str, value: object) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        doc = doc[key]
    if value is _DELETE:
        del doc[keys[-1]]
    else:
        doc[keys[-1]] = value


class _Delete:
    def __repr__(self) -> str:  # a stable test id (pytest-xdist compares ids across workers)
        return "<deleted>"


_DELETE = _Delete()

# (file, field path, new value, expected message after "<dir>/")
BAD_VALUES = [
    ("pool.json", "miningcore.apiUrl", "localhost:4000",
     "pool.json: miningcore.apiUrl: must be an http(s) URL, got 'localhost:4000'"),
    ("pool.json", "miningcore.apiUrl", "ftp://127.0.0.1:4000",
     "pool.json: miningcore.apiUrl: must be an http(s) URL, got 'ftp://127.0.0.1:4000'"),
    ("pool.json", "ergoNode.url", "http://127.0.0.1:notaport",
     "pool.json: ergoNode.url: must be an http(s) URL, got 'http://127.0.0.1:notaport'"),
    ("pool.json", "miningcore.timeoutSeconds", "five",
     "pool.json: miningcore.timeoutSeconds: must be a number, got 'five'"),
    ("pool.json", "miningcore.timeoutSeconds", True,
     "pool.json: miningcore.timeoutSeconds: must be a number, got true"),
    ("pool.json", "miningcore.timeoutSeconds", 0,
     "pool.json: miningcore.timeoutSeconds: must be at least 0.1, got 0"),
    ("pool.json", "miningcore.poolIds", "ergo1",
     "pool.json: miningcore.poolIds: must be a list, got 'ergo1'"),
    ("pool.json", "miningcore.poolIds", ["ergo1", 7],
     "pool.json: miningcore.poolIds[1]: must be a string, got 7"),
    ("pool.json", "miningcore.apiURL", "http://127.0.0.1:4000",
     "pool.json: miningcore.apiURL: unknown key (did you mean 'apiUrl'?)"),
    ("pool.json", "extra", 1, "pool.json: extra: unknown key (expected one of: host, miningcore, ergoNode, "
                              "paths, docker, services)"),
    ("pool.json", "host", "pool 1",
     "pool.json: host: must be a host name of 1-63 characters: letters, digits, '-', '_' or '.', got 'pool 1'"),
    ("pool.json", "host", _DELETE, "pool.json: host: is required"),
    ("pool.json", "ergoNode", _DELETE, "pool.json: ergoNode: is required"),
    ("pool.json", "ergoNode.dataDir", "data/.ergo",
     "pool.json: ergoNode.dataDir: must be an absolute path, got 'data/.ergo'"),
    ("pool.json", "paths.logs", ["/var/log/mc", "logs"],
     "pool.json: paths.logs[1]: must be an absolute path, got 'logs'"),
    ("pool.json", "miningcore.database.dsn", "mysql://root@db/mc",
     "pool.json: miningcore.database.dsn: must be a postgresql:// URL or a libpq 'key=value' string, "
     "got 'mysql://root@db/mc'"),
    ("pool.json", "docker.containers", {"miningcore": ""},
     "pool.json: docker.containers.miningcore: must not be empty"),
    ("pool.json", "miningcore", [], "pool.json: miningcore: must be an object, got a list"),
    ("pool.json", "miningcore.apiUrl", "${MININGCORE_API_URL}",
     "pool.json: miningcore.apiUrl: environment variable MININGCORE_API_URL is not set "
     "(and '${MININGCORE_API_URL}' has no ':-default')"),
    ("pool.json", "miningcore.apiUrl", "${MININGCORE API}",
     "pool.json: miningcore.apiUrl: bad variable reference '${MININGCORE API}': use ${NAME} or ${NAME:-default}"),
    ("monitoring.json", "intervals.collectSeconds", 1.5,
     "monitoring.json: intervals.collectSeconds: must be an integer, got 1.5"),
    ("monitoring.json", "intervals.collectSeconds", "${COLLECT:-fast}",
     "monitoring.json: intervals.collectSeconds: must be an integer, got 'fast'"),
    ("monitoring.json", "agent.redisUrl", "127.0.0.1:6379",
     "monitoring.json: agent.redisUrl: must be a redis://, rediss:// or unix:// URL, got '127.0.0.1:6379'"),
    ("monitoring.json", "agent.spoolDir", _DELETE, "monitoring.json: agent.spoolDir: is required"),
    ("monitoring.json", "thresholds.cpuPercent", 120,
     "monitoring.json: thresholds.cpuPercent: must be at most 100, got 120"),
    ("monitoring.json", "thresholds.diskWarningPercent", 95,
     "monitoring.json: thresholds.diskWarningPercent: must be below diskCriticalPercent (90), got 95"),
    ("monitoring.json", "mounts.excludeFsType", ["tmpfs"],
     "monitoring.json: mounts.excludeFsType: unknown key (did you mean 'excludeFsTypes'?)"),
]


@pytest.mark.parametrize(("file", "path", "value", "message"), BAD_VALUES,
                         ids=[f"{f}:{p}={v!r}"[:60] for f, p, v, _ in BAD_VALUES])
def test_bad_value_is_refused_with_file_path_and_reason(tmp_path, file, path, value, message):
    pool, monitoring = example_config()
    doc = copy.deepcopy(pool if file == "pool.json" else monitoring)
    _set(doc, path, value)
    write_config(tmp_path, doc if file == "pool.json" else pool, doc if file == "monitoring.json" else monitoring)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert str(info.value) == f"{tmp_path}/{message}"


@pytest.mark.parametrize(("text", "message"), [
    ('{"host": "pool-1",\n  "miningcore": {,}}', "pool.json: malformed JSON at line 2, column 18: "
                                                   "Expecting property name enclosed in double quotes"),
    ('{"host": "pool-1"', "pool.json: malformed JSON at line 1, column 18: Expecting ',' delimiter"),
    ("", "pool.json: malformed JSON at line 1, column 1: Expecting value"),
    ('["not", "an", "object"]', "pool.json: must be an object, got a list"),
])
def test_malformed_json_names_line_and_column(tmp_path, text, message):
    _, monitoring = example_config()
    write_config(tmp_path, {}, monitoring)
    (tmp_path / "pool.json").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert str(info.value) == f"{tmp_path}/{message}"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert str(info.value) == f"{tmp_path}/pool.json: file not found"


def test_optional_monitoring_keys_of_issue_4(tmp_path):
    pool, monitoring = example_config()
    pool["docker"]["enabled"] = "${DOCKER_ON:-false}"
    monitoring["agent"]["stateDir"] = "/var/lib/poolwarden-agent/state"
    monitoring["intervals"]["collectorTimeoutSeconds"] = 4
    monitoring["host"] = {"excludeInterfaces": ["lo", "veth*", "docker0"], "excludeDiskDevices": ["loop*"]}
    monitoring["collectors"] = {"diskio": {"enabled": False}, "pool_events": {"everySeconds": 60, "timeoutSeconds": 3}}
    write_config(tmp_path, pool, monitoring)
    config = load_config(tmp_path, env={})
    assert config.pool.docker.enabled is False
    mon = config.monitoring
    assert mon.agent.cursor_dir == "/var/lib/poolwarden-agent/state"
    assert mon.intervals.collector_timeout_seconds == 4
    assert mon.host.exclude_interfaces == ("lo", "veth*", "docker0")
    assert not mon.enabled("diskio") and mon.enabled("cpu")
    assert mon.collectors["pool_events"].every_seconds == 60 and mon.collectors["pool_events"].timeout_seconds == 3
    assert load_config(EXAMPLE_DIR, env={}).monitoring.agent.cursor_dir == "/var/lib/poolwarden-agent/state"


@pytest.mark.parametrize(("collectors", "message"), [
    ({"diskoi": {}}, "collectors.diskoi: unknown key (did you mean 'diskio'?)"),
    ({"cpu": {"enabled": "yes"}}, "collectors.cpu.enabled: must be true or false, got 'yes'"),
    ({"cpu": {"everySeconds": 0}}, "collectors.cpu.everySeconds: must be at least 1, got 0"),
    ({"cpu": {"every": 5}}, "collectors.cpu.every: unknown key"),
])
def test_collectors_section_is_strict(tmp_path, collectors, message):
    pool, monitoring = example_config()
    monitoring["collectors"] = collectors
    write_config(tmp_path, pool, monitoring)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, env={})
    assert message in str(err.value)


def test_services_and_maintenance_settings(tmp_path):
    pool = json.loads((EXAMPLE_DIR / "pool.json").read_text())
    monitoring = json.loads((EXAMPLE_DIR / "monitoring.json").read_text())
    (tmp_path / "monitoring.json").write_text(json.dumps(monitoring))
    pool["services"] = {"miningcore": {"container": "mc"}, "nginx": {"systemdUnit": "nginx.service"},
                        "ergo_node": {"systemdUnit": "${ERGO_NODE_UNIT:-}"}}
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    config = load_config(tmp_path, env={"POOLWARDEN_JOB_KEY_FILE": "/k"})
    assert {n: (s.kind, s.target) for n, s in config.pool.services.items()} == {
        "miningcore": ("docker", "mc"), "nginx": ("systemd", "nginx.service")}  # an empty unit: not managed
    assert config.monitoring.maintenance.job_key_file == "/k"
    assert config.monitoring.maintenance.panel_database_dsn is None
    for services, message in [
        ({"miningcore": {"container": "mc", "systemdUnit": "m.service"}},
         "services.miningcore.container: give exactly one of container (Docker) or systemdUnit"),
        ({"nginx": {"systemdUnit": "nginx; rm -rf /"}}, "services.nginx.systemdUnit: must be a systemd unit name"),
        ({"redis": {"container": "r"}}, "services.redis: unknown key"),
    ]:
        pool["services"] = services
        (tmp_path / "pool.json").write_text(json.dumps(pool))
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(tmp_path, env={})
