"""Print the current TOTP code for a secret file: `python -m devtools.totp .run/demo/admin-totp-secret`.

For the demo's admin account, when no authenticator app is at hand.
"""

from __future__ import annotations

import sys
import time

import pyotp


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m devtools.totp SECRET_FILE", file=sys.stderr)
        return 2
    secret = open(args[0]).read().strip()
    left = 30 - int(time.time()) % 30
    print(f"{pyotp.TOTP(secret).now()}   (valid for {left} more seconds; each code signs in once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
