"""Host collectors: disk usage per filesystem, CPU, memory and swap, load average."""

from __future__ import annotations

import logging
import os
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
    METRICS = ("poolwarden_disk_total_bytes", "poolwarden_disk_used_bytes", "poolwarden_disk_free_bytes")

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
            ]
        missing = set(self.include) - {s.labels["mount"] for s in samples}
        if missing:
            log.warning("disk: configured mounts not found: %s", ", ".join(sorted(missing)))
        return samples


class CpuCollector(Collector):
    """CPU busy percent since the previous call (non-blocking; primed at construction)."""

    name = "cpu"
    METRICS = ("poolwarden_cpu_usage_percent", "poolwarden_cpu_count")

    def __init__(self, psutil: ModuleType):
        self.psutil = psutil
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point

    def collect(self) -> list[Sample]:
        return [
            Sample("poolwarden_cpu_usage_percent", float(self.psutil.cpu_percent(interval=None))),
            Sample("poolwarden_cpu_count", float(self.psutil.cpu_count(logical=True) or 0)),
        ]


class MemoryCollector(Collector):
    """Physical memory and swap; "used" is total - available, as free(1) and the panel mean it."""

    name = "memory"
    METRICS = ("poolwarden_memory_total_bytes", "poolwarden_memory_used_bytes",
               "poolwarden_memory_available_bytes", "poolwarden_swap_total_bytes", "poolwarden_swap_used_bytes")

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
