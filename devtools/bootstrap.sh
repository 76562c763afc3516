#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, then the project's virtual environment.
#
#   devtools/bootstrap.sh demo   -> PostgreSQL, Redis, Python venv
#   devtools/bootstrap.sh test   -> the same, plus Chromium (browser tests), logrotate, dockerd, busybox
#   devtools/bootstrap.sh bench  -> the same, plus prometheus-node-exporter (the agent's reference)
#
# System packages come from apt when run as root; otherwise the one command to run is printed.
# Nothing is started here: the demo and the tests start private servers of their own.
set -euo pipefail

purpose="${1:-test}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

missing=()
have_pg_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }

command -v "$python" >/dev/null || missing+=(python3)
if command -v "$python" >/dev/null; then
  if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    say "Python 3.11 or newer is needed; $("$python" --version 2>&1) found."
    exit 1
  fi
  # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
  "$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
fi
have_pg_server || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v runuser >/dev/null || missing+=(util-linux)
if [ "$purpose" = "bench" ]; then
  # The agent's overhead is measured side by side with node_exporter.
  [ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
  purpose=test
fi
if [ "$purpose" = "test" ]; then
  command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v logrotate >/dev/null || missing+=(logrotate)
  # A private Docker engine for the container collectors, maintenance and deployment tests.
  command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  # The deployment tests: Vagrant's docker provider, and ssh for Ansible.
  command -v vagrant >/dev/null || missing+=(vagrant)
  command -v ssh >/dev/null || missing+=(openssh-client)
fi
fonts_needed=0
if [ "$purpose" = "test" ] && ! fc-list 2>/dev/null | grep -qi dejavu; then fonts_needed=1; missing+=(fonts-dejavu-core); fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing with apt-get: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be missing or stale on a fresh machine: update once, then install.
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/poolwarden-apt.log 2>&1; then
      apt-get update -qq >>/tmp/poolwarden-apt.log 2>&1
      apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/poolwarden-apt.log 2>&1 || {
        say "apt-get failed; see /tmp/poolwarden-apt.log"; tail -20 /tmp/poolwarden-apt.log >&2; exit 1; }
    fi
  else
    say "missing system packages: ${missing[*]}"
    say "run this once, then try again:"
    printf '\n    sudo apt-get install -y %s\n\n' "${missing[*]}" >&2
    exit 1
  fi
fi
: "$fonts_needed"

# The packaged servers may auto-start on some systems; we never use them (private instances only).

if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment in .venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  say "installing poolwarden and its test tools into .venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q -e "$root[test,lint,deploy]" 2>&1 | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c 'import agent, panel, poolsim, flask, psycopg, redis, rq' \
    || { say "the Python install did not complete"; exit 1; }
  touch "$stamp"
fi
