#!/usr/bin/env bash
# Builds the archive the `common` role installs poolwarden from: poolwarden's wheel (from this
# checkout), a wheel of every dependency, and SHA256SUMS, in a tar with fixed names, owners and
# times, so the same inputs give the same bytes (Ansible copies it again only when it changed).
#
#   deploy/build-wheelhouse.sh [OUT.tar]      default: dist/poolwarden-wheelhouse.tar
#
# Environment: TARGET_PYTHON (default 3.11.2, Debian 12's): the hosts' Python, for dependencies
# that only some versions need. PYTHON (default: .venv/bin/python, else python3): its version and architecture must
# match the hosts' (Debian 12: CPython 3.11, x86_64). WHEEL_CACHE: a directory that keeps dependency
# wheels between runs (default: dist/wheel-cache).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/dist/poolwarden-wheelhouse.tar}"
python="${PYTHON:-}"
[ -n "$python" ] || { [ -x "$root/.venv/bin/python" ] && python="$root/.venv/bin/python" || python=python3; }
cache="${WHEEL_CACHE:-$root/dist/wheel-cache}"
# The hosts' Python version, for dependencies with version markers (Debian 12: 3.11.2).
target_python="${TARGET_PYTHON:-3.11.2}"

work="$(mktemp -d "${TMPDIR:-/tmp}/pw-wheelhouse.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$cache" "$(dirname "$out")"

# poolwarden itself: always rebuilt from the checkout (built in a copy, so no build/ or egg-info
# lands in the work tree).
tar -C "$root" --exclude=./.venv --exclude=./.run --exclude=./.git --exclude=./dist --exclude='*.egg-info' \
    --exclude=./build --exclude='__pycache__' -cf - . | tar -C "$work" --one-top-level=src -xf -
pip_wheel() { "$python" -m pip wheel --quiet "$@" >>"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; exit 1; }; }
pip_wheel --no-deps --wheel-dir "$work/wheels" "$work/src"

# Its dependencies: resolved from the wheel's metadata, cached between runs.
pip_wheel --wheel-dir "$cache" --find-links "$cache" "$work"/wheels/poolwarden-*.whl
# The cache keeps dependencies only: an older poolwarden wheel there must never replace this build.
rm -f "$cache"/poolwarden-*.whl
cp -n "$cache"/*.whl "$work/wheels/"
# Only what this poolwarden needs: resolve again offline from the cache into a clean directory.
rm -rf "$work/final"; mkdir "$work/final"
pip_wheel --no-index --find-links "$work/wheels" --wheel-dir "$work/final" "$work"/wheels/poolwarden-*.whl
# Dependencies only the hosts' (older) Python needs, until nothing is missing.
for _ in 1 2 3 4 5; do
  extra="$("$python" "$root/deploy/wheelhouse_closure.py" "$work/final" "$target_python")"
  [ -n "$extra" ] || break
  # shellcheck disable=SC2086 # one requirement per line
  pip_wheel --wheel-dir "$cache" --find-links "$cache" $extra
  cp -n "$cache"/*.whl "$work/wheels/"
  pip_wheel --no-index --find-links "$work/wheels" --wheel-dir "$work/final" $extra
done
(cd "$work/final" && sha256sum -- *.whl >SHA256SUMS)

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=a+rX,u+w,go-w \
    -C "$work/final" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "$out"
