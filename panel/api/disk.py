"""``/api/admin/system/disk`` in the shape of the dashboard poolwarden replaces, with bytes for numbers."""

from __future__ import annotations

from typing import Any

from panel.hosts.overview import (
    Readings,
    component_sizes,
    component_timestamp,
    disk_mounts,
    iso,
    main_mount,
)


def disk_report(host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    """Main mount ("/" if reported, else the largest), every mount, and pool component sizes.

    A host that has not reported disk usage yet gets nulls and an empty ``mounts`` list.
    """
    disks = disk_mounts(readings)
    main = disks.get(main_mount(disks) or "", {})
    stamps = [d["ts"] for d in disks.values()] + [component_timestamp(readings)]
    stamps = [ts for ts in stamps if ts is not None]
    return {
        "host": host["name"],
        "mount": main.get("mount"),
        "total": main.get("total"),
        "used": main.get("used"),
        "free": main.get("free"),
        "usagePercent": main.get("percent"),
        "components": component_sizes(readings),
        "mounts": [
            {"mount": d["mount"], "device": d["device"], "fstype": d["fstype"], "total": d["total"],
             "used": d["used"], "free": d["free"], "usagePercent": d["percent"]}
            for d in disks.values()
        ],
        "timestamp": iso(max(stamps)) if stamps else None,
        "stale": host["status"] != "online",
    }
