#!/usr/bin/env bash
# Builds a Debian 12 root filesystem that boots systemd in a Docker container, as a tarball for
# `docker import`. The deployment tests and Vagrant's docker provider run their "machines" on it.
#
#   deploy/images/build-systemd-image.sh OUT.tar        # ~60-90 s, needs root and debootstrap
#   docker import --change 'CMD ["/lib/systemd/systemd"]' OUT.tar poolwarden/debian-systemd:12
#
# The containers these tests start have no network to the outside, so the packages the roles
# install (PostgreSQL, Redis, nginx, python3-venv, ...) are preinstalled here and *disabled*: the
# roles find them present (no download) and still have to enable and start every service
# themselves. On a real host the same roles install them with apt.
#
# A `vagrant` user with Vagrant's well-known insecure public key and passwordless sudo makes the
# image usable as a Vagrant docker-provider "box" (Vagrant replaces the key at first boot).
set -euo pipefail

out="${1:?usage: build-systemd-image.sh OUT.tar}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
packages=(
  # boot and log in
  systemd systemd-sysv dbus openssh-server sudo ca-certificates iproute2 procps less
  # what Ansible needs on a target
  python3 python3-apt acl
  # what the roles install (present so a network-less container converges)
  python3-venv python3-psycopg2 postgresql postgresql-contrib redis-server nginx openssl ssl-cert
  # the maintenance worker's tools: pg_dump/pg_restore, logrotate, and polkit (which needs logind)
  # for restarting its systemd units
  postgresql-client logrotate polkitd libpam-systemd
)
[ "$(id -u)" -eq 0 ] || { echo "build-systemd-image.sh: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-systemd-image.sh: apt-get install -y debootstrap" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pw-rootfs.XXXXXX")"
trap 'umount -R "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
rootfs="$work/rootfs"

debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2; exit 1; }

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# Services start only when a role enables them.
for unit in postgresql.service redis-server.service nginx.service; do
  in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
# Units that have nothing to do (or fail) inside a container.
for unit in getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service \
            systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount \
            sys-kernel-config.mount dev-hugepages.mount systemd-firstboot.service \
            systemd-modules-load.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
            fstrim.timer; do
  in_root systemctl mask "$unit" >/dev/null 2>&1 || true
done

# sshd: fresh host keys per container, generated at boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  >"$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf"

# Vagrant's user (docker provider): insecure key, replaced by Vagrant on first `vagrant up`.
in_root useradd --create-home --shell /bin/bash --user-group vagrant
mkdir -p "$rootfs/home/vagrant/.ssh"
cat >"$rootfs/home/vagrant/.ssh/authorized_keys" <<'KEY'
ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key
KEY
chmod 700 "$rootfs/home/vagrant/.ssh"; chmod 600 "$rootfs/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant/.ssh
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$rootfs/etc/sudoers.d/vagrant"; chmod 440 "$rootfs/etc/sudoers.d/vagrant"

# Smaller and reproducible-ish: no apt caches, docs or machine identity.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
       "$rootfs"/var/log/*.log
: >"$rootfs/etc/machine-id"
echo "poolwarden-systemd" >"$rootfs/etc/hostname"

tar --numeric-owner --xattrs -C "$rootfs" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "$out"
