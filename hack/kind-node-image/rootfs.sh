#!/usr/bin/env bash
# Builds (once) the Debian root filesystems the offline kind pipeline needs and
# caches them as tarballs under $E2E_CACHE/rootfs:
#   node:  systemd, Debian's containerd 1.6 + runc, iptables/nftables, the
#          tools kind's entrypoint and kubelet use (kind node image base)
#   tools: a minimal userland with iptables/nftables/conntrack (base of the
#          kube-proxy image and of the proxy-init-style iptables image)
#   conformance: the userland Kubernetes' e2e test images carry (shell, curl,
#          nc, dig, iproute2, iperf, nginx, busybox-static, conntrack), base
#          of the images test/e2e/conformance-images.sh builds
#   rootfs.sh node|tools|conformance   -> prints the tarball path
set -euo pipefail
source "$(dirname "$0")/lib.sh"
kind=${1:?node|tools}
case $kind in
  node) pkgs=systemd,systemd-sysv,dbus,containerd,runc,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,socat,e2fsprogs ;;
  tools) pkgs=iptables,nftables,conntrack,iproute2,kmod,procps ;;
  conformance) pkgs=bash,curl,wget,netcat-openbsd,iproute2,iperf,bind9-dnsutils,iputils-ping,procps,nginx-light,busybox-static,conntrack,iptables,ca-certificates ;;
  *) die "unknown rootfs $kind (want node, tools or conformance)" ;;
esac
key=$(printf '%s %s %s' "$DEBIAN_SUITE" "$pkgs" 1 | sha256sum | cut -c1-12)
tar=$E2E_CACHE/rootfs/$kind-$DEBIAN_SUITE-$key.tar
if [[ ! -s $tar ]]; then
  dir=$E2E_CACHE/rootfs/$kind-build
  rm -rf "$dir"
  log "debootstrap $kind rootfs ($DEBIAN_SUITE, $pkgs)"
  debootstrap --variant=minbase --include="$pkgs" "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" \
    >"$E2E_LOGS/debootstrap-$kind.log" 2>&1 || die "debootstrap failed, see $E2E_LOGS/debootstrap-$kind.log"
  # drop apt lists and caches: they only weigh the image down
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$dir"
fi
echo "$tar"
