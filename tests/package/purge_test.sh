#!/bin/sh
# SPDX-License-Identifier: MIT
# purge_test.sh DIR: what piuparts checks, without a chroot to download. The Debian packages
# DIR holds (not the -dbgsym ones) are installed with dpkg into an overlay of this system
# (a mount namespace of its own: overlayfs over /, then chroot); the Python module is
# imported as root, which writes .pyc files where none were compiled; shmrpcgen and
# shmrpc-ini-check run; every package is purged. Then the overlay's upper layer holds what
# changed: no file or folder may be left that the system did not have (dpkg's records and
# logs aside), and nothing of the system may be gone. The system itself is not touched.
# deb_test.sh runs it. Exits 77 (skipped) when not root, or when no overlay can be mounted.
set -eu
dir=$(cd "$1" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the install and purge check needs root"; exit 77; }
ov=$(mktemp -d)
# The namespace's mounts end with it; only the folders are left to remove.
trap 'rm -rf "$ov"' EXIT
trap 'exit 1' INT TERM
mkdir "$ov/upper" "$ov/work" "$ov/root" "$ov/debs"
for deb in "$dir"/*.deb; do
    case $deb in *-dbgsym_*) ;; *) cp "$deb" "$ov/debs/" ;; esac
done
pkgs=""
for deb in "$ov"/debs/*.deb; do pkgs="$pkgs $(dpkg-deb -f "$deb" Package)"; done

# In the chroot: install, use, purge; dpkg's output in $ov/dpkg.log (outside the overlay).
cat >"$ov/debs/inside.sh" <<EOF
set -eu
dpkg -i /mnt/debs/*.deb
python3 -c 'import shmrpc, shmrpc.dict, shmrpc.service, speedysvc, speedysvc.service'
shmrpcgen --version
shmrpc-ini-check --help >/dev/null
dpkg --purge $pkgs
for p in $pkgs; do
    if dpkg-query -W "\$p" >/dev/null 2>&1; then echo "dpkg still knows \$p"; exit 3; fi
done
EOF
# A mount namespace of its own, or no check: root without CAP_SYS_ADMIN (a container's)
# cannot make one.
unshare -m true 2>"$ov/dpkg.log" || { echo "SKIP: no mount namespace: $(cat "$ov/dpkg.log")"; exit 77; }
rc=0
unshare -m sh -eu -c '
    ov=$1
    mount --make-rprivate /
    mount -t overlay overlay -o "lowerdir=/,upperdir=$ov/upper,workdir=$ov/work" "$ov/root" ||
        exit 77
    mount --rbind /dev "$ov/root/dev"
    mount -t proc proc "$ov/root/proc"
    mount --rbind /sys "$ov/root/sys"
    mount -t tmpfs tmpfs "$ov/root/tmp"
    mount -t tmpfs tmpfs "$ov/root/mnt"
    mkdir "$ov/root/mnt/debs"
    mount --bind "$ov/debs" "$ov/root/mnt/debs"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive \
        chroot "$ov/root" sh -eu /mnt/debs/inside.sh
' sh "$ov" >"$ov/dpkg.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
    if [ $rc -eq 77 ]; then
        echo "SKIP: cannot mount an overlay of /: $(tail -1 "$ov/dpkg.log")"
        exit 77
    fi
    tail -30 "$ov/dpkg.log"
    echo "FAIL: installing, using or purging$pkgs in an overlay (exit $rc)"
    exit 1
fi

# What the upper layer holds: a whiteout (a character device 0/0) is a file of the system
# removed; anything else that the system does not have was left behind. dpkg's records,
# the logs, the caches of debconf, ldconfig and man-db (whose trigger, run for our manual
# pages, may add the CACHEDIR.TAG a partly built cache lacked), and the files of the users
# systemd-sysusers made (kept at a purge, as Debian does with users) are expected.
left=$(cd "$ov/upper" && find . -mindepth 1 \( -type c -o ! -type d -o -type d \) -print |
    sed 's|^\./|/|' | while IFS= read -r p; do
        case $p in
        /var/lib/dpkg | /var/lib/dpkg/* | /var/log | /var/log/* | /var/cache | /var/cache/debconf* | \
            /var/cache/ldconfig* | /var/cache/man/* | /etc/ld.so.cache | /etc/passwd- | /etc/group- | \
            /etc/shadow- | /etc/gshadow- | /etc/.pwd.lock | /tmp | /mnt | /root | /root/.cache | \
            /root/.cache/*) continue ;;
        esac
        if [ -c "$ov/upper$p" ] && [ "$(stat -c %t:%T "$ov/upper$p")" = 0:0 ]; then
            echo "removed: $p"
        elif [ ! -e "$p" ] && [ ! -L "$p" ]; then
            echo "left: $p"
        fi
    done)
if [ -n "$left" ]; then
    echo "$left" | head -40
    echo "FAIL: a purge of$pkgs does not leave the system as it found it"
    exit 1
fi
echo "installed, used and purged$pkgs in an overlay: nothing left"
