"""The agent's configuration: ``pool.json`` and ``monitoring.json`` from one directory.

String values may use ``${VAR}`` (the variable must be set) or ``${VAR:-default}`` (the default
is used when the variable is unset or empty), as Ansible templates and systemd environment files
provide them. After interpolation every value is validated strictly; a wrong file is refused at
start with a message naming the file, the field path and the reason, e.g.::

    config/pool.json: miningcore.apiUrl: must be an http(s) URL, got 'localhost:4000'

Unknown keys are refused too, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.contract import HOST_NAME_RULE, SERVICES, valid_host_name

DEFAULT_CONFIG_DIR = "/etc/poolwarden"
CONFIG_DIR_ENV = "POOLWARDEN_CONFIG_DIR"
POOL_FILE = "pool.json"
MONITORING_FILE = "monitoring.json"

DEFAULT_EXCLUDE_FS_TYPES = ("tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup",
                            "cgroup2", "nsfs", "autofs")
DEFAULT_SPOOL_MAX_BATCHES = 10_000
DEFAULT_EXCLUDE_INTERFACES = ("lo", "veth*", "br-*", "docker*")  # Docker bridges: their traffic
# also crosses the host's own interface, and a host with many compose networks has dozens
DEFAULT_EXCLUDE_DISK_DEVICES = ("loop*", "ram*", "fd*", "zram*", "sr*")
DEFAULT_COLLECTOR_TIMEOUT_SECONDS = 10.0

# Names a monitoring.json ``collectors`` entry may use (the collectors' ``name``).
COLLECTOR_NAMES = ("disk", "cpu", "memory", "load", "network", "diskio", "miningcore", "miningcore_metrics",
                   "pool_events", "miningcore_log", "ergo_node", "postgresql", "postgresql_tables", "containers",
                   "components", "docker_disk")


class ConfigError(Exception):
    """A configuration file is missing or wrong; ``str()`` is the message for the operator."""

    def __init__(self, file: str, path: str, reason: str):
        self.file, self.path, self.reason = file, path, reason
        super().__init__(f"{file}: {path}: {reason}" if path else f"{file}: {reason}")


# --- typed configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class MiningcoreConfig:
    api_url: str
    metrics_url: str | None
    pool_ids: tuple[str, ...]
    timeout_seconds: float
    database_dsn: str | None
    log_dir: str | None
    config_file: str | None = None  # Miningcore's config.json (maintenance: update with rollback)
    stratum_ports: tuple[int, ...] = ()  # health check: these must accept TCP connections


@dataclass(frozen=True)
class ErgoNodeConfig:
    url: str
    api_key: str | None
    timeout_seconds: float
    data_dir: str | None


@dataclass(frozen=True)
class PathsConfig:
    logs: tuple[str, ...] = ()
    backups: str | None = None


@dataclass(frozen=True)
class DockerConfig:
    socket: str = "unix:///var/run/docker.sock"
    containers: dict[str, str] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class ServiceConfig:
    """How the maintenance worker controls one service: a Docker container or a systemd unit."""

    name: str  # one of contract.SERVICES
    kind: str  # "docker" | "systemd"
    target: str  # container name or unit name


@dataclass(frozen=True)
class PoolConfig:
    host: str
    miningcore: MiningcoreConfig
    ergo_node: ErgoNodeConfig
    paths: PathsConfig
    docker: DockerConfig
    services: dict[str, ServiceConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSettings:
    redis_url: str
    spool_dir: str
    spool_max_batches: int = DEFAULT_SPOOL_MAX_BATCHES
    state_dir: str | None = None  # event cursors; None = the spool directory

    @property
    def cursor_dir(self) -> str:
        return self.state_dir or self.spool_dir


@dataclass(frozen=True)
class IntervalsConfig:
    collect_seconds: int = 15
    component_sizes_seconds: int = 300
    collector_timeout_seconds: float = DEFAULT_COLLECTOR_TIMEOUT_SECONDS


@dataclass(frozen=True)
class CollectorSettings:
    enabled: bool = True
    every_seconds: int | None = None
    timeout_seconds: float | None = None
    file_name: str | None = None  # miningcore_log only: the log file in miningcore.logDir


@dataclass(frozen=True)
class HostConfig:
    exclude_interfaces: tuple[str, ...] = DEFAULT_EXCLUDE_INTERFACES
    exclude_disk_devices: tuple[str, ...] = DEFAULT_EXCLUDE_DISK_DEVICES


@dataclass(frozen=True)
class MountsConfig:
    include: tuple[str, ...] = ()
    exclude_fs_types: tuple[str, ...] = DEFAULT_EXCLUDE_FS_TYPES


@dataclass(frozen=True)
class ThresholdsConfig:
    disk_warning_percent: float = 80
    disk_critical_percent: float = 90
    cpu_percent: float = 90
    memory_percent: float = 90


@dataclass(frozen=True)
class MaintenanceConfig:
    job_key_file: str | None = None  # the host's job key (hex); without it the worker refuses to start
    safe_mode_file: str | None = None  # while this file exists, destructive actions are refused locally
    work_dir: str | None = None  # logrotate state and configuration, scratch files; None = stateDir
    backup_margin_percent: float = 20  # free space needed beyond the expected backup size
    panel_database_dsn: str | None = None  # on the control host: the panel's own database, for backups
    scratch_database_dsn: str | None = None  # where test restores create their scratch database
    log_max_size_mb: int = 100  # logrotate: rotate a file above this size ...
    log_max_age_days: int = 1  # ... or older than this
    log_keep: int = 14  # rotated files kept


@dataclass(frozen=True)
class MonitoringConfig:
    agent: AgentSettings
    intervals: IntervalsConfig
    mounts: MountsConfig
    thresholds: ThresholdsConfig
    host: HostConfig = field(default_factory=HostConfig)
    collectors: dict[str, CollectorSettings] = field(default_factory=dict)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)

    def enabled(self, name: str) -> bool:
        settings = self.collectors.get(name)
        return settings is None or settings.enabled


@dataclass(frozen=True)
class Config:
    pool: PoolConfig
    monitoring: MonitoringConfig
    config_dir: str

    @property
    def host(self) -> str:
        return self.pool.host

    def summary(self) -> dict[str, Any]:
        """What the operator may see (no secrets): for check-config and the agent_started event."""
        mc, node, agent = self.pool.miningcore, self.pool.ergo_node, self.monitoring.agent
        return {
            "host": self.pool.host,
            "miningcore": redact_url(mc.api_url),
            "pools": list(mc.pool_ids) or "all",
            "database": redact_url(mc.database_dsn) if mc.database_dsn else None,
            "ergoNode": redact_url(node.url),
            "ergoNodeApiKey": "set" if node.api_key else "not set",
            "redis": redact_url(agent.redis_url),
            "spoolDir": agent.spool_dir,
            "collectSeconds": self.monitoring.intervals.collect_seconds,
            "componentSizesSeconds": self.monitoring.intervals.component_sizes_seconds,
        }


def redact_url(url: str) -> str:
    """``scheme://user:secret@host/db`` -> ``scheme://user:***@host/db`` (other strings unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


# --- environment interpolation ----------------------------------------------------------------

_VAR = re.compile(r"\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(value: str, env: dict[str, str], file: str, path: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in one string."""

    def replace(match: re.Match[str]) -> str:
        expr = match.group(1)
        name, sep, default = expr.partition(":-")
        if not _VAR_NAME.fullmatch(name):
            raise ConfigError(file, path, f"bad variable reference '${{{expr}}}': "
                                          "use ${NAME} or ${NAME:-default}")
        current = env.get(name)
        if sep:
            return current if current else default
        if current is None:
            raise ConfigError(file, path, f"environment variable {name} is not set "
                                          f"(and '${{{name}}}' has no ':-default')")
        return current

    return _VAR.sub(replace, value)


def _interpolate_tree(node: Any, env: dict[str, str], file: str, path: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, file, path)
    if isinstance(node, list):
        return [_interpolate_tree(v, env, file, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, file, _join(path, k)) for k, v in node.items()}
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- a small strict reader --------------------------------------------------------------------


class _Section:
    """Reads one JSON object, remembering which keys were used so unknown ones can be refused."""

    def __init__(self, data: Any, file: str, path: str = ""):
        self.file, self.path = file, path
        if not isinstance(data, dict):
            raise self.error("", f"must be an object, got {_describe(data)}")
        self.data: dict[str, Any] = data
        self.known: list[str] = []

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.file, _join(self.path, key) if key else self.path, reason)

    def _get(self, key: str, required: bool) -> Any:
        self.known.append(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(key, "is required")
            return None
        return self.data[key]

    def section(self, key: str, required: bool = True) -> _Section:
        value = self._get(key, required)
        return _Section({} if value is None else value, self.file, _join(self.path, key))

    def value(self, key: str, check: Callable[[Any, str], Any], *, required: bool = True,
              default: Any = None) -> Any:
        raw = self._get(key, required)
        if raw is None:
            return default
        try:
            return check(raw, key)
        except _Invalid as exc:
            raise self.error(exc.key or key, exc.reason) from None

    def list(self, key: str, check: Callable[[Any, str], Any], *, default: tuple = ()) -> tuple:
        raw = self._get(key, False)
        if raw is None:
            return default
        if not isinstance(raw, list):
            raise self.error(key, f"must be a list, got {_describe(raw)}")
        out = []
        for i, item in enumerate(raw):
            try:
                out.append(check(item, key))
            except _Invalid as exc:
                raise self.error(f"{key}[{i}]", exc.reason) from None
        return tuple(out)

    def done(self) -> None:
        for key in self.data:
            if key not in self.known:
                hint = difflib.get_close_matches(key, self.known, n=1)
                suggestion = f"did you mean '{hint[0]}'?" if hint else f"expected one of: {', '.join(self.known)}"
                raise self.error(key, f"unknown key ({suggestion})")


class _Invalid(Exception):
    def __init__(self, reason: str, key: str | None = None):
        self.reason, self.key = reason, key
        super().__init__(reason)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return repr(value)


# checks: each takes the raw value (and its key), returns the typed value or raises _Invalid


def text(value: Any, _key: str = "") -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_describe(value)}")
    return value


def nonempty_text(value: Any, key: str = "") -> str:
    value = text(value, key).strip()
    if not value:
        raise _Invalid("must not be empty")
    return value


def number(minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> Callable:
    kind = "an integer" if integer else "a number"

    def check(value: Any, _key: str = "") -> float | int:
        if isinstance(value, str):  # "15" after interpolation is fine
            try:
                value = int(value.strip()) if integer else float(value.strip())
            except ValueError:
                raise _Invalid(f"must be {kind}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"must be {kind}, got {_describe(value)}")
        if integer and isinstance(value, float):
            if not value.is_integer():
                raise _Invalid(f"must be {kind}, got {value!r}")
            value = int(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Invalid(f"must be a finite number, got {value!r}")
        if minimum is not None and value < minimum:
            raise _Invalid(f"must be at least {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise _Invalid(f"must be at most {maximum:g}, got {value!r}")
        return value

    return check


def url(*schemes: str, what: str) -> Callable:
    def check(value: Any, key: str = "") -> str:
        value = text(value, key).strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise _Invalid(f"must be {what}, got {value!r}") from None
        if parts.scheme.lower() not in schemes or not (parts.hostname or parts.path and parts.scheme == "unix"):
            raise _Invalid(f"must be {what}, got {value!r}")
        return value.rstrip("/") if parts.scheme in ("http", "https") else value

    return check


http_url = url("http", "https", what="an http(s) URL")
redis_url = url("redis", "rediss", "unix", what="a redis://, rediss:// or unix:// URL")
docker_url = url("unix", "tcp", "http", "https", what="a unix://, tcp:// or http(s):// Docker address")


def postgres_dsn(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if value.startswith(("postgresql://", "postgres://")):
        return url("postgresql", "postgres", what="a postgresql:// URL")(value, key)
    if "=" in value:  # libpq key=value form: "host=... dbname=..."
        return value
    raise _Invalid(f"must be a postgresql:// URL or a libpq 'key=value' string, got {value!r}")


def absolute_path(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if not os.path.isabs(value):
        raise _Invalid(f"must be an absolute path, got {value!r}")
    return os.path.normpath(value)


def host_name(value: Any, key: str = "") -> str:
    value = text(value, key)
    if not valid_host_name(value):
        raise _Invalid(f"must be a host name of {HOST_NAME_RULE}, got {value!r}")
    return value


def pool_id(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise _Invalid(f"must be a Miningcore pool id (letters, digits, '-', '_', '.'), got {value!r}")
    return value


def optional_text(value: Any, key: str = "") -> str | None:
    return text(value, key) or None


def blank_is_none(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """For optional settings filled from the environment: ``"${VAR:-}"`` left empty means "not set"."""

    def wrapped(value: Any, key: str = "") -> Any:
        return None if value == "" else check(value, key)

    return wrapped


def file_name(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if "/" in value or "\\" in value or value in (".", ".."):
        raise _Invalid(f"must be a file name (no directory: the directory is miningcore.logDir), got {value!r}")
    return value


def fs_type(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        raise _Invalid(f"must be a filesystem type name, got {value!r}")
    return value


def boolean(value: Any, _key: str = "") -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # "${FLAG:-true}"
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_describe(value)}")
    return value


def name_pattern(value: Any, key: str = "") -> str:
    value = nonempty_text(value, key)
    if not re.fullmatch(r"[A-Za-z0-9_.:*?\[\]-]+", value):
        raise _Invalid(f"must be a name or a glob pattern (letters, digits, '_.:-*?[]'), got {value!r}")
    return value


def systemd_unit(value: Any, key: str = "") -> str:
    text_value = nonempty_text(value, key)
    if not re.fullmatch(r"[A-Za-z0-9:_.@-]{1,200}\.(service|socket|target)", text_value):
        raise _Invalid(f"must be a systemd unit name such as miningcore.service, got {text_value!r}")
    return text_value


def string_map(value: Any, key: str = "") -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"must be an object, got {_describe(value)}")
    out = {}
    for name, item in value.items():
        try:
            out[name] = nonempty_text(item)
        except _Invalid as exc:
            raise _Invalid(exc.reason, key=f"{key}.{name}") from None
    return out


# --- the two files ----------------------------------------------------------------------------


def parse_pool(data: Any, file: str) -> PoolConfig:
    root = _Section(data, file)
    host = root.value("host", host_name)

    s = root.section("miningcore")
    db = s.section("database", required=False)
    dsn = db.value("dsn", postgres_dsn, required=False)
    db.done()
    miningcore = MiningcoreConfig(
        api_url=s.value("apiUrl", http_url),
        metrics_url=s.value("metricsUrl", http_url, required=False),
        pool_ids=s.list("poolIds", pool_id),
        timeout_seconds=s.value("timeoutSeconds", number(0.1, 300), required=False, default=5.0),
        database_dsn=dsn,
        log_dir=s.value("logDir", absolute_path, required=False),
        config_file=s.value("configFile", blank_is_none(absolute_path), required=False),
        stratum_ports=s.list("stratumPorts", number(1, 65535, integer=True)),
    )
    s.done()

    s = root.section("ergoNode")
    ergo_node = ErgoNodeConfig(
        url=s.value("url", http_url),
        api_key=s.value("apiKey", optional_text, required=False),
        timeout_seconds=s.value("timeoutSeconds", number(0.1, 300), required=False, default=5.0),
        data_dir=s.value("dataDir", absolute_path, required=False),
    )
    s.done()

    s = root.section("paths", required=False)
    paths = PathsConfig(logs=s.list("logs", absolute_path),
                        backups=s.value("backups", absolute_path, required=False))
    s.done()

    s = root.section("docker", required=False)
    docker = DockerConfig(
        socket=s.value("socket", docker_url, required=False, default=DockerConfig.socket),
        containers=s.value("containers", string_map, required=False, default={}),
        enabled=s.value("enabled", boolean, required=False, default=True),
    )
    s.done()

    services: dict[str, ServiceConfig] = {}
    s = root.section("services", required=False)
    for name in list(s.data):
        if name not in SERVICES:
            continue  # reported as unknown by done()
        c = s.section(name)
        container = c.value("container", blank_is_none(nonempty_text), required=False)
        unit = c.value("systemdUnit", blank_is_none(systemd_unit), required=False)
        if container is None and unit is None:
            continue  # both left empty (e.g. "${VAR:-}"): the service is not managed on this host
        if (container is None) == (unit is None):
            raise c.error("container", "give exactly one of container (Docker) or systemdUnit")
        c.done()
        services[name] = ServiceConfig(name, "docker" if container else "systemd", container or unit)
    s.known += list(SERVICES)
    s.done()
    root.done()
    return PoolConfig(host=host, miningcore=miningcore, ergo_node=ergo_node, paths=paths, docker=docker,
                      services=services)


def parse_monitoring(data: Any, file: str) -> MonitoringConfig:
    root = _Section(data, file)

    s = root.section("agent")
    agent = AgentSettings(
        redis_url=s.value("redisUrl", redis_url),
        spool_dir=s.value("spoolDir", absolute_path),
        spool_max_batches=s.value("spoolMaxBatches", number(1, 10_000_000, integer=True), required=False,
                                  default=DEFAULT_SPOOL_MAX_BATCHES),
        state_dir=s.value("stateDir", absolute_path, required=False),
    )
    s.done()

    s = root.section("intervals", required=False)
    intervals = IntervalsConfig(
        collect_seconds=s.value("collectSeconds", number(1, 3600, integer=True), required=False, default=15),
        component_sizes_seconds=s.value("componentSizesSeconds", number(10, 86400, integer=True),
                                        required=False, default=300),
        collector_timeout_seconds=s.value("collectorTimeoutSeconds", number(0.1, 3600), required=False,
                                          default=DEFAULT_COLLECTOR_TIMEOUT_SECONDS),
    )
    s.done()

    s = root.section("mounts", required=False)
    mounts = MountsConfig(include=s.list("include", absolute_path),
                          exclude_fs_types=s.list("excludeFsTypes", fs_type, default=DEFAULT_EXCLUDE_FS_TYPES))
    s.done()

    s = root.section("thresholds", required=False)
    percent = number(0, 100)
    thresholds = ThresholdsConfig(
        disk_warning_percent=s.value("diskWarningPercent", percent, required=False, default=80),
        disk_critical_percent=s.value("diskCriticalPercent", percent, required=False, default=90),
        cpu_percent=s.value("cpuPercent", percent, required=False, default=90),
        memory_percent=s.value("memoryPercent", percent, required=False, default=90),
    )
    if thresholds.disk_warning_percent >= thresholds.disk_critical_percent:
        raise s.error("diskWarningPercent", f"must be below diskCriticalPercent "
                                            f"({thresholds.disk_critical_percent:g}), "
                                            f"got {thresholds.disk_warning_percent:g}")
    s.done()

    s = root.section("host", required=False)
    host = HostConfig(
        exclude_interfaces=s.list("excludeInterfaces", name_pattern, default=DEFAULT_EXCLUDE_INTERFACES),
        exclude_disk_devices=s.list("excludeDiskDevices", name_pattern, default=DEFAULT_EXCLUDE_DISK_DEVICES),
    )
    s.done()

    collectors: dict[str, CollectorSettings] = {}
    s = root.section("collectors", required=False)
    for name in list(s.data):
        if name not in COLLECTOR_NAMES:
            continue  # reported as unknown by done()
        c = s.section(name)
        collectors[name] = CollectorSettings(
            enabled=c.value("enabled", boolean, required=False, default=True),
            every_seconds=c.value("everySeconds", number(1, 86400, integer=True), required=False),
            timeout_seconds=c.value("timeoutSeconds", number(0.1, 3600), required=False),
            file_name=c.value("fileName", file_name, required=False) if name == "miningcore_log" else None,
        )
        c.done()
    s.known += list(COLLECTOR_NAMES)
    s.done()

    s = root.section("maintenance", required=False)
    d = MaintenanceConfig()
    maintenance = MaintenanceConfig(
        job_key_file=s.value("jobKeyFile", blank_is_none(absolute_path), required=False),
        safe_mode_file=s.value("safeModeFile", blank_is_none(absolute_path), required=False),
        work_dir=s.value("workDir", blank_is_none(absolute_path), required=False),
        backup_margin_percent=s.value("backupMarginPercent", number(0, 1000), required=False,
                                      default=d.backup_margin_percent),
        panel_database_dsn=s.value("panelDatabaseDsn", blank_is_none(postgres_dsn), required=False),
        scratch_database_dsn=s.value("scratchDatabaseDsn", blank_is_none(postgres_dsn), required=False),
        log_max_size_mb=s.value("logMaxSizeMb", number(1, 1_000_000, integer=True), required=False,
                                default=d.log_max_size_mb),
        log_max_age_days=s.value("logMaxAgeDays", number(1, 3650, integer=True), required=False,
                                 default=d.log_max_age_days),
        log_keep=s.value("logKeep", number(1, 1000, integer=True), required=False, default=d.log_keep),
    )
    s.done()
    root.done()
    return MonitoringConfig(agent=agent, intervals=intervals, mounts=mounts, thresholds=thresholds, host=host,
                            collectors=collectors, maintenance=maintenance)


def read_json(path: Path, env: dict[str, str]) -> Any:
    """Read one file, naming line and column when the JSON is malformed, then interpolate."""
    file = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "", f"cannot read the file: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(file, "", f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    return _interpolate_tree(data, env, file, "")


def default_config_dir(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR


def load_config(config_dir: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load and validate both files; raise ConfigError on the first problem found."""
    env = dict(os.environ) if env is None else env
    directory = Path(config_dir if config_dir is not None else default_config_dir(env))
    pool_file, monitoring_file = directory / POOL_FILE, directory / MONITORING_FILE
    pool = parse_pool(read_json(pool_file, env), str(pool_file))
    monitoring = parse_monitoring(read_json(monitoring_file, env), str(monitoring_file))
    return Config(pool=pool, monitoring=monitoring, config_dir=str(directory))

