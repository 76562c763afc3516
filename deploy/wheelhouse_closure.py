"""Requirements the hosts' Python needs that the wheelhouse lacks (used by build-wheelhouse.sh).

pip resolves dependencies for the Python it runs on. The hosts may run an older patch release
(Debian 12: CPython 3.11.2), for which some dependencies have extra requirements, e.g. redis-py
needs async-timeout on Python < 3.11.3. This reads every wheel's Requires-Dist, evaluates its
markers for the target Python, and prints each requirement that no wheel in the directory provides.

    python deploy/wheelhouse_closure.py WHEEL_DIR 3.11.2
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(zf.read(name).decode("utf-8"))


def main(wheel_dir: str, target: str) -> int:
    env = default_environment()
    env.update(python_full_version=target, python_version=".".join(target.split(".")[:2]))
    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    present = {canonical(metadata(w)["Name"]) for w in wheels}
    missing = set()
    for wheel in wheels:
        for line in metadata(wheel).get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate({**env, "extra": ""}):
                continue
            if canonical(req.name) not in present:
                missing.add(f"{req.name}{req.specifier}")
    for req in sorted(missing):
        print(req)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
