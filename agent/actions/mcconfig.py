"""Replace Miningcore's ``config.json``, restart Miningcore, and roll back if the pool is not healthy.

Order of work, each step reported:

1. refuse up front what cannot work: no ``miningcore.configFile`` in pool.json, no ``miningcore``
   service to restart, no current file to roll back to, or a new file that would obviously break
   Miningcore (``validate_miningcore_config``: the checks follow Miningcore's ``config.schema.json``
   and the startup checks in its code, see ../shared/reference/miningcore.md §6);
2. the diff (``difflib`` unified, secret values masked) goes into the result;
3. the current file is copied beside itself as ``config.json.<UTC timestamp>.bak`` (the newest
   ``BACKUPS_KEPT`` of those are kept; files poolwarden did not name are never touched);
4. the new file is written atomically: a temporary file in the same directory, same permissions and
   owner, fsync, rename over the old name, fsync of the directory. A symlinked config is written
   through to its target. A Docker single-file bind mount sees the new file when the container is
   restarted (mounts are set up again at each start);
5. Miningcore is restarted and must be healthy within ``rollback_after_seconds``: the container or
   unit runs and the API serves every enabled pool of the new file;
6. if not, the previous file is written back the same way, Miningcore restarted again and waited for,
   and the action fails saying it rolled back (``details.rolled_back``), with the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.actions import ActionContext, ActionFailed
from agent.actions.services import configured_service, restart_service

BACKUPS_KEPT = 5
PAYOUT_SCHEMES = ("PPLNS", "PROP", "SOLO", "PPLNSBF")  # PPS and PPBS are declared but not implemented
DEFAULT_API_PORT = 4000
_SECRET = re.compile(r'("[^"]*(?:password|apikey|api_key|token|secret|encryptionkey)[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*"',
                     re.IGNORECASE)


# --- validation ----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _port(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= 65535


def _api_port(data: dict[str, Any]) -> Any:
    api = data.get("api")
    return api.get("port", DEFAULT_API_PORT) if isinstance(api, dict) else DEFAULT_API_PORT


def enabled_pool_ids(data: Any) -> tuple[str, ...]:
    pools = data.get("pools") if isinstance(data, dict) else None
    if not isinstance(pools, list):
        return ()
    return tuple(str(p["id"]) for p in pools if isinstance(p, dict) and p.get("enabled") is True and _text(p.get("id")))


def validate_miningcore_config(data: Any, current: Any = None, watched_pools: tuple[str, ...] = ()
                               ) -> tuple[list[str], list[str]]:
    """(errors, warnings): errors are what would stop Miningcore or its pools from starting (or
    leave poolwarden unable to see it), warnings what Miningcore would silently ignore."""
    errors: list[str] = []
    warnings: list[str] = []
    if not isinstance(data, dict):
        return ["the file must be a JSON object"], warnings
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        return ["pools: must be a non-empty list (Miningcore requires it)"], warnings
    cluster_payments = isinstance(data.get("paymentProcessing"), dict) and \
        data["paymentProcessing"].get("enabled") is True
    persistence = data.get("persistence")
    seen_ids: set[str] = set()
    seen_ports: dict[int, str] = {}
    for i, pool in enumerate(pools):
        where = f"pools[{i}]"
        if not isinstance(pool, dict):
            errors.append(f"{where}: must be an object")
            continue
        pool_id = pool.get("id")
        if not _text(pool_id) or re.search(r"[\s/?#]", pool_id):
            errors.append(f"{where}.id: must be a non-empty pool id without spaces or '/', got {pool_id!r}")
        elif pool_id in seen_ids:
            errors.append(f"{where}.id: pool id {pool_id!r} is used twice")
        else:
            seen_ids.add(pool_id)
            where = f"pools[{i}] ({pool_id})"
        if "enabled" in pool and not isinstance(pool["enabled"], bool):
            errors.append(f"{where}.enabled: must be true or false, got {pool['enabled']!r}")
        if not _text(pool.get("coin")):
            errors.append(f"{where}.coin: required: the coin template name, e.g. \"ergo\"")
        enabled = pool.get("enabled") is True
        if enabled and not _text(pool.get("address")):
            errors.append(f"{where}.address: required: the pool's wallet address")
        _check_ports(pool.get("ports"), where, pool_id, seen_ports, errors)
        daemons = pool.get("daemons")
        if not isinstance(daemons, list) or not daemons:
            errors.append(f"{where}.daemons: must be a non-empty list (the node Miningcore talks to)")
        else:
            for j, daemon in enumerate(daemons):
                if not isinstance(daemon, dict) or not _text(daemon.get("host")) or not _port(daemon.get("port")):
                    errors.append(f"{where}.daemons[{j}]: needs a host and a port between 1 and 65535")
        payments = pool.get("paymentProcessing")
        if payments is not None and not isinstance(payments, dict):
            errors.append(f"{where}.paymentProcessing: must be an object")
            payments = None
        payments = payments or {}
        scheme = payments.get("payoutScheme")
        if scheme is not None and (not isinstance(scheme, str) or scheme.upper() not in PAYOUT_SCHEMES):
            errors.append(f"{where}.paymentProcessing.payoutScheme: must be one of {', '.join(PAYOUT_SCHEMES)}, "
                          f"got {scheme!r}")
        paying = enabled and cluster_payments and payments.get("enabled") is True
        if paying and not (isinstance(persistence, dict) and isinstance(persistence.get("postgres"), dict)):
            errors.append(f"{where}: payments are enabled but persistence.postgres is missing "
                          "(Miningcore refuses to start)")
        if paying and str(pool.get("coin", "")).lower() == "ergo" and isinstance(daemons, list) and daemons and \
                isinstance(daemons[0], dict) and not _text(daemons[0].get("apiKey")):
            errors.append(f"{where}.daemons[0].apiKey: required when payments are enabled (the node's API key, "
                          "in clear text)")
        for holder, path in ((pool, where), (payments, f"{where}.paymentProcessing")):
            if isinstance(holder.get("extra"), dict):
                warnings.append(f"{path}.extra: Miningcore ignores a nested \"extra\" object; put its keys "
                                f"({', '.join(holder['extra']) or 'none'}) directly in {path}")
        if "shareRecoveryFile" in payments:
            warnings.append(f"{where}.paymentProcessing.shareRecoveryFile is ignored: it belongs at the top level")
    if not enabled_pool_ids(data) and not errors:
        errors.append("pools: no pool has \"enabled\": true, so Miningcore would run no pool")
    _check_cluster(data, current, errors)
    served = set(enabled_pool_ids(data))
    for pool_id in watched_pools:
        if pool_id not in served:
            warnings.append(f"pool.json's miningcore.poolIds watches {pool_id!r}, which this file does not run")
    return errors, warnings


def _check_ports(ports: Any, where: str, pool_id: Any, seen: dict[int, str], errors: list[str]) -> None:
    if not isinstance(ports, dict) or not ports:
        errors.append(f"{where}.ports: must be an object of stratum ports, e.g. {{\"4074\": {{\"difficulty\": 0.01}}}}")
        return
    for key, endpoint in ports.items():
        number = int(key) if isinstance(key, str) and key.isdigit() else None
        if number is None or not 1 <= number <= 65535:
            errors.append(f"{where}.ports: {key!r} is not a port number between 1 and 65535")
            continue
        if number in seen:
            errors.append(f"{where}.ports: port {number} is also used by pool {seen[number]}")
        seen[number] = str(pool_id)
        if not isinstance(endpoint, dict):
            errors.append(f"{where}.ports.{key}: must be an object")
        elif not _is_number(endpoint.get("difficulty")) or endpoint["difficulty"] <= 0:
            errors.append(f"{where}.ports.{key}.difficulty: must be a number above 0, got "
                          f"{endpoint.get('difficulty')!r}")


def _check_cluster(data: dict[str, Any], current: Any, errors: list[str]) -> None:
    api = data.get("api")
    if api is not None and not isinstance(api, dict):
        errors.append("api: must be an object")
    elif isinstance(api, dict):
        if api.get("enabled") is False:
            errors.append("api.enabled: false would switch off the API that poolwarden and the pool's website read")
        if "port" in api and not _port(api["port"]):
            errors.append(f"api.port: must be a port between 1 and 65535, got {api['port']!r}")
    if isinstance(current, dict) and _port(_api_port(data)) and _api_port(data) != _api_port(current):
        errors.append(f"api.port: changes from {_api_port(current)} to {_api_port(data)}; poolwarden checks the pool "
                      "at pool.json's miningcore.apiUrl and would roll this back: change apiUrl first, then the port")
    persistence = data.get("persistence")
    if persistence is not None:
        pg = persistence.get("postgres") if isinstance(persistence, dict) else None
        if not isinstance(pg, dict):
            errors.append("persistence.postgres: must be an object with host, port, user, password, database")
        else:
            for key in ("host", "user", "database"):
                if not _text(pg.get(key)):
                    errors.append(f"persistence.postgres.{key}: required")
            if "port" in pg and not _port(pg["port"]):
                errors.append(f"persistence.postgres.port: must be a port between 1 and 65535, got {pg['port']!r}")
    notifications = data.get("notifications")
    admin = notifications.get("admin") if isinstance(notifications, dict) else None
    if isinstance(admin, dict) and admin.get("enabled") is True:
        email = notifications.get("email") if isinstance(notifications.get("email"), dict) else {}
        missing = [k for k, v in (("notifications.email.fromName", email.get("fromName")),
                                  ("notifications.email.fromAddress", email.get("fromAddress")),
                                  ("notifications.admin.emailAddress", admin.get("emailAddress"))) if not _text(v)]
        if missing:
            errors.append(f"{', '.join(missing)}: required when notifications.admin.enabled is true "
                          "(Miningcore refuses to start)")


# --- files ---------------------------------------------------------------------------------------


def mask_secrets(line: str) -> str:
    return _SECRET.sub(r'\1"***"', line)


def config_diff(old: str, new: str, path: str) -> tuple[str, int, int]:
    """(unified diff with secret values masked, lines added, lines removed)."""
    lines = list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      fromfile=f"{path} (current)", tofile=f"{path} (new)"))
    added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    text = "".join(mask_secrets(ln if ln.endswith("\n") else ln + "\n") for ln in lines)
    return text, added, removed


def write_atomically(path: str, data: bytes, like: os.stat_result) -> None:
    """Temporary file beside ``path`` with ``like``'s mode and owner, fsync, rename, fsync the directory."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".poolwarden-tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), like.st_mode & 0o7777)
            if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), like.st_uid, like.st_gid)
                except PermissionError:
                    raise ActionFailed(f"cannot give the new {name} its owner {like.st_uid}:{like.st_gid}: the agent "
                                       "must run as root or as the file's owner") from None
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _backup_name(path: str) -> str:
    now = datetime.now(UTC)
    candidate = f"{path}.{now:%Y%m%dT%H%M%SZ}.bak"
    return candidate if not os.path.exists(candidate) else f"{path}.{now:%Y%m%dT%H%M%S.%fZ}.bak"


def keep_backup(path: str, like: os.stat_result) -> tuple[str, list[str]]:
    """Copy the current file to its timestamped backup; prune poolwarden's backups beyond
    ``BACKUPS_KEPT``. Returns (backup path, removed backups)."""
    backup = _backup_name(path)
    shutil.copy2(path, backup)
    if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(backup, like.st_uid, like.st_gid)
        except PermissionError:
            pass  # the copy is ours; the original keeps its owner
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.\d{8}T\d{6}(\.\d{6})?Z\.bak")
    ours = sorted(f for f in os.listdir(directory) if pattern.fullmatch(f))
    removed = []
    for old in ours[:-BACKUPS_KEPT]:
        Path(directory, old).unlink(missing_ok=True)
        removed.append(os.path.join(directory, old))
    return backup, removed


# --- the action ----------------------------------------------------------------------------------


def run_update_miningcore_config(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    mc = ctx.config.pool.miningcore
    if not mc.config_file:
        raise ActionFailed("miningcore.configFile is not set in pool.json: poolwarden does not know which "
                           "config.json Miningcore reads", {"missing_config": "miningcore.configFile"})
    configured_service(ctx, "miningcore")
    path = os.path.realpath(mc.config_file)
    if path != mc.config_file:
        ctx.say(f"{mc.config_file} points to {path}: that file is updated")
    try:
        like = os.stat(path)
        old_bytes = Path(path).read_bytes()
    except FileNotFoundError:
        raise ActionFailed(f"{path} does not exist: poolwarden only replaces an existing config.json (it needs "
                           "the current one to roll back to)") from None
    except OSError as exc:
        raise ActionFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    old_text = old_bytes.decode("utf-8", errors="replace")
    new_text = params["config"]
    if not new_text.endswith("\n"):
        new_text += "\n"
    try:
        current = json.loads(old_text)
    except ValueError:
        current = None
        ctx.say("the current file is not plain JSON (comments?): it is kept as the backup all the same")
    diff, added, removed = config_diff(old_text, new_text, path)
    errors, warnings = validate_miningcore_config(json.loads(new_text), current, mc.pool_ids)
    for warning in warnings:
        ctx.say(f"warning: {warning}")
    if errors:
        raise ActionFailed(f"the new config.json was refused, nothing was changed: {'; '.join(errors)}",
                           {"errors": errors, "warnings": warnings, "diff": diff})
    if new_text == old_text:
        ctx.say("the new file is identical to the current one: nothing to do")
        return {"summary": "config.json unchanged: nothing written, Miningcore not restarted", "changed": False,
                "diff": "", "warnings": warnings, "file": path}
    ctx.say(f"diff: +{added} -{removed} lines")

    try:
        backup, pruned = keep_backup(path, like)
    except OSError as exc:
        raise ActionFailed(f"cannot keep a copy of {path} beside it ({exc.strerror or exc}): nothing was changed",
                           {"diff": diff}) from None
    ctx.say(f"kept the current file as {backup}" + (f"; removed {len(pruned)} older backups" if pruned else ""))
    try:
        write_atomically(path, new_text.encode(), like)
    except OSError as exc:
        raise ActionFailed(f"cannot write the new {path} ({exc.strerror or exc}): the current file is unchanged "
                           "and Miningcore was not restarted", {"diff": diff, "backup": backup}) from None
    ctx.say(f"wrote the new {os.path.basename(path)} ({len(new_text.encode())} bytes)")

    deadline = params["rollback_after_seconds"]
    base = {"file": path, "backup": backup, "diff": diff, "warnings": warnings, "lines_added": added,
            "lines_removed": removed}
    started = time.monotonic()
    try:
        outcome = restart_service(ctx, "miningcore", deadline, expect_pools=enabled_pool_ids(json.loads(new_text)))
    except ActionFailed as failure:
        ctx.say(f"Miningcore is not healthy with the new file ({failure.message}): rolling back to {backup}")
        _roll_back(ctx, path, old_bytes, like, deadline, current, base, failure)
    seconds = round(time.monotonic() - started, 1)
    return {"summary": f"config.json updated (+{added} -{removed} lines); Miningcore restarted and healthy after "
                       f"{seconds:g} s", "changed": True, **base, "backups_removed": pruned,
            "health": outcome["health"], "seconds": seconds}


def _roll_back(ctx: ActionContext, path: str, old_bytes: bytes, like: os.stat_result, deadline: float,
               current: Any, base: dict[str, Any], failure: ActionFailed) -> None:
    try:
        write_atomically(path, old_bytes, like)
    except (OSError, ActionFailed) as exc:
        reason = exc.message if isinstance(exc, ActionFailed) else (exc.strerror or str(exc))
        raise ActionFailed(f"Miningcore was not healthy with the new config.json ({failure.message}) and the "
                           f"previous file could not be written back ({reason}): restore {base['backup']} by hand",
                           {**base, "rolled_back": False, "service_down": True}) from None
    ctx.say(f"restored the previous {os.path.basename(path)}; restarting Miningcore again")
    details = {**base, "rolled_back": True, "new_config_error": failure.message}
    expect = enabled_pool_ids(current) if isinstance(current, dict) else None
    try:
        outcome = restart_service(ctx, "miningcore", deadline, expect_pools=expect or None)
    except ActionFailed as second:
        raise ActionFailed(
            f"Miningcore was not healthy within {deadline:g} s with the new config.json ({failure.message}); "
            f"rolled back to the previous file, but Miningcore is still not healthy: {second.message}",
            {**details, "service_down": True, "rollback_error": second.message}) from None
    raise ActionFailed(
        f"Miningcore was not healthy within {deadline:g} s with the new config.json ({failure.message}); "
        "rolled back to the previous file and Miningcore is healthy again",
        {**details, "health_after_rollback": outcome["health"]})
