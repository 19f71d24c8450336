#!/bin/sh
# Runs inside the new root file system (chroot) once debootstrap and rootfs/ are in place.
set -eu
systemctl enable systemd-networkd.service tcplab-seed.service
# Nothing waits for a network that has no default route, and nothing runs on a timer mid-exercise.
systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service getty-static.service systemd-binfmt.service
# Each VM gets its host key from its seed; an image's own would be shared by every VM made from it.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
