"""Host collectors: disk usage per filesystem, CPU (all and per core), memory and swap, load
average, network and disk I/O rates.

Rates come from the collector's own deltas between two runs (monotonic clock): the first run
after start gives none; a counter that goes backwards (a device re-added, a wrap) gives none for
that interval rather than a negative rate.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable, Sequence
from types import ModuleType

from agent.collectors.base import Collector
from agent.contract import Sample

log = logging.getLogger("agent.collectors.host")


class DiskCollector(Collector):
    """Size, use and free space of each real filesystem, one sample set per device.

    Mounts come from ``psutil.disk_partitions(all=True)``. With ``include`` set only those mount
    points are reported; otherwise every mount whose type is not in ``exclude_fs_types`` and whose
    size is not zero (pseudo filesystems). A device mounted twice (bind mounts) is reported once,
    at its first mount point.
    """

    name = "disk"
    METRICS = ("poolwarden_disk_total_bytes", "poolwarden_disk_used_bytes", "poolwarden_disk_free_bytes",
               "poolwarden_disk_used_percent")

    def __init__(self, psutil: ModuleType, include: Sequence[str] = (), exclude_fs_types: Sequence[str] = ()):
        self.psutil = psutil
        self.include = [os.path.normpath(p) for p in include]
        self.exclude_fs_types = set(exclude_fs_types)

    def collect(self) -> list[Sample]:
        samples: list[Sample] = []
        seen: set[object] = set()
        for part in self.psutil.disk_partitions(all=True):
            mount = part.mountpoint
            if self.include:
                if os.path.normpath(mount) not in self.include:
                    continue
            elif part.fstype in self.exclude_fs_types:
                continue
            try:
                usage = self.psutil.disk_usage(mount)
                st_dev = os.stat(mount).st_dev
            except OSError as exc:  # a stale NFS mount or a mount point we may not read
                log.warning("disk: cannot read %s (%s): %s", mount, part.device, exc)
                continue
            if usage.total == 0 and not self.include:
                continue
            # Real devices are deduplicated by name, virtual ones ("tmpfs", "none") by filesystem id.
            key = part.device if part.device.startswith("/") else (part.device, st_dev)
            if key in seen:
                continue
            seen.add(key)
            labels = {"mount": mount, "device": part.device, "fstype": part.fstype}
            samples += [
                Sample("poolwarden_disk_total_bytes", float(usage.total), labels),
                Sample("poolwarden_disk_used_bytes", float(usage.used), labels),
                Sample("poolwarden_disk_free_bytes", float(usage.free), labels),
                Sample("poolwarden_disk_used_percent",
                       round(usage.used / (usage.used + usage.free) * 100, 3) if usage.used + usage.free else 0.0,
                       labels),
            ]
        missing = set(self.include) - {s.labels["mount"] for s in samples}
        if missing:
            log.warning("disk: configured mounts not found: %s", ", ".join(sorted(missing)))
        return samples


def _busy_and_total(t) -> tuple[float, float, float]:
    """(busy, total, iowait) seconds of one cpu_times() entry, as psutil counts them (guest time is
    already inside user time on Linux; idle and iowait are not busy)."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    iowait = getattr(t, "iowait", 0.0)
    return total - t.idle - iowait, total, iowait


class CpuCollector(Collector):
    """CPU busy percent since the previous run, for all cores and per core, plus iowait.

    One ``cpu_times(percpu=True)`` read per run; the totals are its sum, so both views agree
    and no psutil module state is shared with anyone else. Primed at construction."""

    name = "cpu"
    METRICS = ("poolwarden_cpu_usage_percent", "poolwarden_cpu_count", "poolwarden_cpu_core_usage_percent",
               "poolwarden_cpu_iowait_percent")

    def __init__(self, psutil: ModuleType):
        self.psutil = psutil
        self.previous = self._read()

    def _read(self) -> list[tuple[float, float, float]]:
        return [_busy_and_total(t) for t in self.psutil.cpu_times(percpu=True)]

    @staticmethod
    def _percent(now: tuple[float, float, float], before: tuple[float, float, float]) -> tuple[float, float]:
        d_total = now[1] - before[1]
        if d_total <= 0:
            return 0.0, 0.0
        busy = min(max((now[0] - before[0]) / d_total * 100, 0.0), 100.0)
        iowait = min(max((now[2] - before[2]) / d_total * 100, 0.0), 100.0)
        return round(busy, 3), round(iowait, 3)

    def collect(self) -> list[Sample]:
        current, previous = self._read(), self.previous
        self.previous = current
        samples = [Sample("poolwarden_cpu_count", float(len(current)))]
        if len(previous) != len(current):  # a CPU went on- or offline: start over
            return samples
        for core, (now, before) in enumerate(zip(current, previous, strict=True)):
            samples.append(Sample("poolwarden_cpu_core_usage_percent", self._percent(now, before)[0],
                                  {"core": str(core)}))
        total_now = tuple(map(sum, zip(*current, strict=True)))
        total_before = tuple(map(sum, zip(*previous, strict=True)))
        busy, iowait = self._percent(total_now, total_before)
        samples += [Sample("poolwarden_cpu_usage_percent", busy), Sample("poolwarden_cpu_iowait_percent", iowait)]
        return samples


class MemoryCollector(Collector):
    """Physical memory and swap; "used" is total - available, as free(1) and the panel mean it."""

    name = "memory"
    METRICS = ("poolwarden_memory_total_bytes", "poolwarden_memory_used_bytes",
               "poolwarden_memory_available_bytes", "poolwarden_swap_total_bytes", "poolwarden_swap_used_bytes",
               "poolwarden_memory_used_percent")

    def __init__(self, psutil: ModuleType):
        self.psutil = psutil

    def collect(self) -> list[Sample]:
        mem = self.psutil.virtual_memory()
        swap = self.psutil.swap_memory()
        return [
            Sample("poolwarden_memory_total_bytes", float(mem.total)),
            Sample("poolwarden_memory_used_bytes", float(mem.total - mem.available)),
            Sample("poolwarden_memory_available_bytes", float(mem.available)),
            Sample("poolwarden_swap_total_bytes", float(swap.total)),
            Sample("poolwarden_swap_used_bytes", float(swap.used)),
            Sample("poolwarden_memory_used_percent",
                   round((mem.total - mem.available) / mem.total * 100, 3) if mem.total else 0.0),
        ]


class LoadCollector(Collector):
    """1, 5 and 15 minute load averages."""

    name = "load"
    METRICS = ("poolwarden_load1", "poolwarden_load5", "poolwarden_load15")

    def __init__(self, getloadavg: Callable[[], tuple[float, float, float]] = os.getloadavg):
        self.getloadavg = getloadavg

    def collect(self) -> list[Sample]:
        one, five, fifteen = self.getloadavg()
        return [Sample("poolwarden_load1", float(one)), Sample("poolwarden_load5", float(five)),
                Sample("poolwarden_load15", float(fifteen))]


class RateTracker:
    """Per-key counter deltas between runs, as rates per second (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.previous: dict[str, tuple[float, tuple[float, ...]]] = {}

    def rates(self, key: str, counters: tuple[float, ...], now: float | None = None) -> tuple[float, ...] | None:
        now = self.clock() if now is None else now
        before = self.previous.get(key)
        self.previous[key] = (now, counters)
        if before is None:
            return None
        elapsed = now - before[0]
        deltas = [a - b for a, b in zip(counters, before[1], strict=True)]
        if elapsed <= 0 or any(d < 0 for d in deltas):
            return None
        return tuple(d / elapsed for d in deltas)

    def forget_except(self, keys: set[str]) -> None:
        for key in set(self.previous) - keys:
            del self.previous[key]


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class NetworkCollector(Collector):
    """Bytes per second in and out, and errors + drops per second, per network interface."""

    name = "network"
    METRICS = ("poolwarden_net_receive_bytes_per_second", "poolwarden_net_transmit_bytes_per_second",
               "poolwarden_net_errors_per_second")

    def __init__(self, psutil: ModuleType, exclude: Sequence[str] = ("lo", "veth*")):
        self.psutil = psutil
        self.exclude = tuple(exclude)
        self.tracker = RateTracker()
        self.collect()  # prime: the first real run already has a reference point

    def collect(self) -> list[Sample]:
        samples: list[Sample] = []
        seen = set()
        for nic, c in self.psutil.net_io_counters(pernic=True).items():
            if _excluded(nic, self.exclude):
                continue
            seen.add(nic)
            rates = self.tracker.rates(nic, (c.bytes_recv, c.bytes_sent, c.errin + c.errout + c.dropin + c.dropout))
            if rates is None:
                continue
            labels = {"interface": nic}
            samples += [Sample("poolwarden_net_receive_bytes_per_second", round(rates[0], 3), labels),
                        Sample("poolwarden_net_transmit_bytes_per_second", round(rates[1], 3), labels),
                        Sample("poolwarden_net_errors_per_second", round(rates[2], 3), labels)]
        self.tracker.forget_except(seen)
        return samples


def whole_disks(sys_block: str = "/sys/block") -> set[str] | None:
    """Names of whole block devices (not partitions), or None when /sys/block cannot be read."""
    try:
        return set(os.listdir(sys_block))
    except OSError:
        return None


class DiskIoCollector(Collector):
    """Read and write bytes per second, IOPS and busy percent per whole block device (partitions
    are left out so nothing counts twice; loop, ram and the like are excluded by pattern)."""

    name = "diskio"
    METRICS = ("poolwarden_diskio_read_bytes_per_second", "poolwarden_diskio_write_bytes_per_second",
               "poolwarden_diskio_reads_per_second", "poolwarden_diskio_writes_per_second",
               "poolwarden_diskio_busy_percent")

    def __init__(self, psutil: ModuleType, exclude: Sequence[str] = ("loop*", "ram*"),
                 disks: Callable[[], set[str] | None] = whole_disks):
        self.psutil = psutil
        self.exclude = tuple(exclude)
        self.disks = disks
        self.tracker = RateTracker()
        self.collect()

    def collect(self) -> list[Sample]:
        counters = self.psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
        disks = self.disks()
        samples: list[Sample] = []
        seen = set()
        for dev, c in counters.items():
            if _excluded(dev, self.exclude) or (disks is not None and dev not in disks):
                continue
            seen.add(dev)
            busy_ms = float(getattr(c, "busy_time", 0))
            rates = self.tracker.rates(dev, (c.read_bytes, c.write_bytes, c.read_count, c.write_count, busy_ms))
            if rates is None:
                continue
            labels = {"device": dev}
            samples += [Sample("poolwarden_diskio_read_bytes_per_second", round(rates[0], 3), labels),
                        Sample("poolwarden_diskio_write_bytes_per_second", round(rates[1], 3), labels),
                        Sample("poolwarden_diskio_reads_per_second", round(rates[2], 3), labels),
                        Sample("poolwarden_diskio_writes_per_second", round(rates[3], 3), labels),
                        Sample("poolwarden_diskio_busy_percent", round(min(rates[4] / 10, 100.0), 3), labels)]
        self.tracker.forget_except(seen)
        return samples
