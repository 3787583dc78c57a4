#!/usr/bin/env bash
# Installs, from Debian's packages, every host tool the tests and the demo need.
# Idempotent: packages already present are skipped.
set -euo pipefail
pkgs=(iptables nftables iproute2 cpio etcd-server openssl kmod gzip qemu-system-x86 busybox-static e2fsprogs)
if [[ "${WITH_E2E:-0}" == 1 ]]; then
  pkgs+=(docker.io debootstrap)
fi
# E2E_VARIANT=crio builds CRI-O (cgo: libseccomp, gpgme) and its pinns (C)
if [[ "${E2E_VARIANT:-}" == crio ]]; then
  pkgs+=(libseccomp-dev libgpgme-dev pkg-config gcc make libc6-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
