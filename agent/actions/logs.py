"""Log rotation with the system's ``logrotate`` and a configuration poolwarden writes itself.

The configuration (``<workDir>/logrotate/poolwarden.conf``, rewritten on every run) covers the
``*.log`` files directly in each configured log directory (pool.json ``paths.logs`` and
``miningcore.logDir``): rotated when bigger than ``logMaxSizeMb`` or older than ``logMaxAgeDays``,
compressed at once, ``logKeep`` rotations kept (and none older than ``logKeep`` × ``logMaxAgeDays``
days), empty files left alone, missing files no error. ``copytruncate`` for every file: Miningcore
(NLog) and nginx keep their log files open, so the file is copied and then truncated in place and
the writer goes on writing into the same file. Lines written between the copy and the truncation
are lost: logrotate's documented price of copytruncate.

logrotate keeps its own state (when each file was last rotated) in ``<workDir>/logrotate/state``.
It ignores a configuration file that is writable by group or others and refuses to rotate in a
directory that is world-writable (or group-writable by a group other than root) unless told which
user to act as: poolwarden writes its configuration 0600 and adds ``su <owner> <group>`` for such a
directory.

Bytes freed are measured, not estimated: the space the directory's files take on disk
(``st_blocks``, like ``du``) before and after the run. A writer that does not append (no
``O_APPEND``) leaves a sparse file after the truncation whose apparent size stays large while its
disk use drops; disk use is what the operator needs back.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from typing import Any

from agent.actions import ActionContext, ActionFailed
from agent.config import MaintenanceConfig

LOGROTATE_TIMEOUT_SECONDS = 1500
_UNSAFE = re.compile(r"[*?\[\]{}\"\\'\x00-\x1f]")  # globs, quotes, control characters


def log_directories(ctx: ActionContext) -> list[str]:
    """The configured log directories, each once; refuses one logrotate could misread."""
    pool = ctx.config.pool
    candidates = [*pool.paths.logs, *([pool.miningcore.log_dir] if pool.miningcore.log_dir else [])]
    out: list[str] = []
    for directory in candidates:
        if not os.path.isabs(directory):
            raise ActionFailed(f"log directory {directory!r} is not an absolute path: refused",
                               {"directory": directory})
        if _UNSAFE.search(directory):
            raise ActionFailed(f"log directory {directory!r} contains glob or quote characters: refused (name a "
                               "plain directory; poolwarden adds the *.log pattern itself)", {"directory": directory})
        normal = os.path.normpath(directory)
        if normal == "/":
            raise ActionFailed("log directory '/' refused: name the directory that holds the logs")
        if normal not in out:
            out.append(normal)
    if not out:
        raise ActionFailed("no log directory is configured: set paths.logs or miningcore.logDir in pool.json",
                           {"missing_config": "paths.logs"})
    return out


def rotation_interval(days: int) -> str:
    """logrotate knows daily, weekly, monthly and yearly: the longest one not longer than ``days``."""
    if days >= 365:
        return "yearly"
    if days >= 30:
        return "monthly"
    if days >= 7:
        return "weekly"
    return "daily"


def _su_line(directory: str) -> str | None:
    """``su owner group`` when logrotate would refuse the directory's permissions, else None."""
    st = os.stat(directory)
    risky = st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0)
    if not risky:
        return None
    try:
        return f"su {pwd.getpwuid(st.st_uid).pw_name} {grp.getgrgid(st.st_gid).gr_name}"
    except KeyError:
        raise ActionFailed(f"{directory} is writable by group or others and its owner {st.st_uid}:{st.st_gid} has no "
                           "name: logrotate refuses such a directory; tighten its permissions") from None


def render_config(directories: list[str], m: MaintenanceConfig) -> str:
    lines = ["# Written by poolwarden (rotate_logs) on every run: edit monitoring.json's maintenance", "# settings, "
             "not this file.", ""]
    for directory in directories:
        lines += [f'"{os.path.join(directory, "*.log")}" {{',
                  f"    {rotation_interval(m.log_max_age_days)}",
                  f"    maxsize {m.log_max_size_mb}M",
                  f"    rotate {m.log_keep}",
                  f"    maxage {m.log_keep * m.log_max_age_days}",
                  "    compress", "    nodelaycompress", "    nodateext", "    missingok", "    notifempty",
                  "    copytruncate", "    nomail"]
        su = _su_line(directory)
        if su:
            lines.append(f"    {su}")
        lines += ["}", ""]
    return "\n".join(lines)


def disk_usage(directories: list[str]) -> dict[str, tuple[int, int]]:
    """path -> (bytes on disk, apparent size) of each regular file directly in the directories."""
    out = {}
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[entry.path] = (st.st_blocks * 512, st.st_size)
    return out


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _write_private(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing tmp keeps its mode: set it
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_rotate_logs(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    force = bool(params.get("force"))
    directories = log_directories(ctx)
    present = [d for d in directories if os.path.isdir(d)]
    missing = [d for d in directories if d not in present]
    for directory in missing:
        ctx.say(f"{directory} does not exist: skipped")
    if not present:
        raise ActionFailed(f"none of the log directories exists: {', '.join(directories)}",
                           {"directories": directories})
    logrotate = shutil.which("logrotate")
    if logrotate is None:
        raise ActionFailed("logrotate is not installed on this host: install it (apt-get install logrotate)",
                           {"missing": "logrotate"})

    work = os.path.join(ctx.work_dir, "logrotate")
    os.makedirs(work, mode=0o700, exist_ok=True)
    conf, state = os.path.join(work, "poolwarden.conf"), os.path.join(work, "state")
    _write_private(conf, render_config(present, ctx.config.monitoring.maintenance))
    ctx.say(f"wrote {conf} for {', '.join(present)}")

    before = disk_usage(present)
    ctx.say(f"{len(before)} files, {human(sum(b for b, _ in before.values()))} on disk before rotation")
    argv = [logrotate, "-v", "-s", state, *(["-f"] if force else []), conf]
    ctx.say(" ".join(argv))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=LOGROTATE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"logrotate did not finish within {LOGROTATE_TIMEOUT_SECONDS} s") from None
    output = (result.stdout or "") + (result.stderr or "")
    after = disk_usage(present)
    report = _report(output, before, after)
    report.update({"directories": present, "missing_directories": missing, "config_file": conf,
                   "state_file": state, "forced": force})
    for item in report["rotated"]:
        ctx.say(f"rotated {item['file']}: {human(item['bytes_before'])} -> {human(item['bytes_after'])}, "
                f"archive {human(item['archive_bytes'])}")
    ignored = [ln for ln in output.splitlines() if ln.startswith("error: Ignoring")]
    if ignored:
        raise ActionFailed(f"logrotate ignored poolwarden's configuration: {ignored[0][7:]} ({conf} must belong to "
                           "the agent's user or root and not be writable by group or others)", report)
    if result.returncode != 0:
        errors = report["errors"] or [output.strip().splitlines()[-1] if output.strip() else "no output"]
        raise ActionFailed(f"logrotate failed (exit status {result.returncode}): {errors[0]}", report)
    freed = report["bytes_freed"]
    if report["rotated"]:
        summary = (f"rotated {len(report['rotated'])} log file{'s' if len(report['rotated']) != 1 else ''}, "
                   f"freed {human(freed)}")
    else:
        summary = f"nothing needed rotating ({sum(1 for p in before if p.endswith('.log'))} log files checked)"
    if report["removed"]:
        summary += f"; removed {len(report['removed'])} old rotation{'s' if len(report['removed']) != 1 else ''}"
    ctx.say(summary)
    return {"summary": summary, **report}


def _report(output: str, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, Any]:
    rotated_paths = [m.group(1) for m in re.finditer(r"^truncating (.+)$", output, re.MULTILINE)]
    removed = [m.group(1) for m in re.finditer(r"^removing old log (.+)$", output, re.MULTILINE)]
    errors = [ln[len("error: "):] for ln in output.splitlines() if ln.startswith("error: ")]
    rotated = []
    for path in rotated_paths:
        archive = f"{path}.1.gz" if f"{path}.1.gz" in after else f"{path}.1"
        rotated.append({"file": path, "bytes_before": before.get(path, (0, 0))[0],
                        "bytes_after": after.get(path, (0, 0))[0], "archive": archive,
                        "archive_bytes": after.get(archive, (0, 0))[0]})
    disk_before = sum(b for b, _ in before.values())
    disk_after = sum(b for b, _ in after.values())
    return {"rotated": rotated, "removed": removed, "errors": errors, "bytes_on_disk_before": disk_before,
            "bytes_on_disk_after": disk_after, "bytes_freed": max(disk_before - disk_after, 0),
            "apparent_bytes_before": sum(s for _, s in before.values()),
            "apparent_bytes_after": sum(s for _, s in after.values())}
