#!/usr/bin/env bash
# Builds, without any registry, the test images Kubernetes' e2e suite
# (v1.34.4) runs in the [sig-network] tests, under the exact names
# k8s.io/kubernetes/test/utils/image/manifest.go gives them, and prints one
# name per line (for `kind load docker-image`). Nothing is pulled:
#   agnhost:2.56           the Go program (hack/build-kube-e2e.sh, static,
#                          version 2.56 from its VERSION file) on a Debian
#                          rootfs with what upstream's Alpine image carries
#                          for the tests: sh/bash, curl, nc (openbsd), dig,
#                          iproute2 (ss), iperf; /agnhost-2, /uploads, the
#                          porter certificates, user 1000 in group 50000,
#                          /coredns; ENTRYPOINT /agnhost, CMD pause
#   jessie-dnsutils:1.7    the same Debian rootfs (dig, bash, getent), /coredns
#   busybox:1.37.0-1       FROM scratch: Debian's busybox-static (1.35, the
#                          closest Debian has) and its applet links, CMD sh
#   nginx:1.14-4           Debian's nginx-light serving /var/www/html on :80
#                          in the foreground
#   regression-issue-74839:1.2  the Go program of that name (same module)
#   build-image/distroless-iptables:v0.7.14  the Debian rootfs (iptables,
#                          conntrack): the test runs `sleep` and conntrack
# The Debian rootfs is hack/kind-node-image/rootfs.sh conformance (cached).
# The images are rebuilt only when this script, the rootfs or the binaries
# change (a stamp keyed by their hashes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../hack/kind-node-image/lib.sh"
K=registry.k8s.io/e2e-test-images
images=("$K/agnhost:2.56" "$K/jessie-dnsutils:1.7" "$K/busybox:1.37.0-1" "$K/nginx:1.14-4"
  "$K/regression-issue-74839:1.2" registry.k8s.io/build-image/distroless-iptables:v0.7.14)
kube=$(bash "$REPO_ROOT/hack/build-kube-e2e.sh" e2e.test agnhost regression-issue-74839)
kdir=$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION
[[ $(cat "$kdir/test/images/agnhost/VERSION") == 2.56 ]] || die "agnhost VERSION in k8s.io/kubernetes@$KUBE_VERSION is not 2.56: update the image names here from test/utils/image/manifest.go"
bash "$REPO_ROOT/hack/kind-node-image/tools.sh" coredns >/dev/null
rootfs=$(bash "$REPO_ROOT/hack/kind-node-image/rootfs.sh" conformance)
key=$( { basename "$rootfs"; cat "$0"; sha256sum "$kube/agnhost" "$kube/regression-issue-74839" | cut -c1-64; } | sha256sum | cut -c1-12)
stamp=$E2E_CACHE/images/conformance-$key.list
ensure_dockerd
have_all() { for i in "${images[@]}"; do docker image inspect "$i" >/dev/null 2>&1 || return 1; done; }
if [[ -s $stamp ]] && have_all; then cat "$stamp"; exit 0; fi

base=authbridge-e2e/conformance-base:$key
ctx=$E2E_CACHE/images/conformance-ctx; rm -rf "$ctx"; mkdir -p "$ctx"
path='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
docker import -c "$path" "$rootfs" "$base" >/dev/null
build() { # build NAME DIR: docker build DIR/Dockerfile as NAME
  docker build -q -t "$1" "$2" >/dev/null 2>"$2.log" || die "docker build $1 failed: $(tail -5 "$2.log")"
  log "built $1"
}

mkdir -p "$ctx/agnhost"
cp "$kube/agnhost" "$E2E_BIN/coredns-$COREDNS_VERSION" "$kdir/test/images/agnhost/porter/localhost.crt" "$kdir/test/images/agnhost/porter/localhost.key" "$ctx/agnhost/"
chmod 0644 "$ctx/agnhost/localhost."*
cat > "$ctx/agnhost/Dockerfile" <<EOF
FROM $base
COPY coredns-$COREDNS_VERSION /coredns
COPY localhost.crt localhost.key agnhost /
RUN ln -s agnhost /agnhost-2 && mkdir /uploads && ln -s /usr/bin/iperf /usr/local/bin/iperf \\
 && groupadd -g 50000 group-defined-in-image && useradd -u 1000 -M -G group-defined-in-image user-defined-in-image
EXPOSE 80 8080 8081 9376 5000
ENTRYPOINT ["/agnhost"]
CMD ["pause"]
EOF
build "$K/agnhost:2.56" "$ctx/agnhost"

mkdir -p "$ctx/jessie"
cp "$E2E_BIN/coredns-$COREDNS_VERSION" "$ctx/jessie/"
printf 'FROM %s\nCOPY coredns-%s /coredns\n' "$base" "$COREDNS_VERSION" > "$ctx/jessie/Dockerfile"
build "$K/jessie-dnsutils:1.7" "$ctx/jessie"

mkdir -p "$ctx/nginx"
printf 'FROM %s\nEXPOSE 80\nSTOPSIGNAL SIGQUIT\nCMD ["nginx", "-g", "daemon off;"]\n' "$base" > "$ctx/nginx/Dockerfile"
build "$K/nginx:1.14-4" "$ctx/nginx"

mkdir -p "$ctx/regression"
cp "$kube/regression-issue-74839" "$ctx/regression/"
printf 'FROM %s\nCOPY regression-issue-74839 /\nENTRYPOINT ["/regression-issue-74839"]\n' "$base" > "$ctx/regression/Dockerfile"
build "$K/regression-issue-74839:1.2" "$ctx/regression"

docker tag "$base" registry.k8s.io/build-image/distroless-iptables:v0.7.14

# busybox: the static binary and one link per applet, nothing else but the
# account files and /tmp, as upstream's image.
bb=$ctx/busybox-root; mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/root"
tar -xf "$rootfs" -C "$bb" ./usr/bin/busybox
mv "$bb/usr/bin/busybox" "$bb/bin/busybox"; rm -rf "$bb/usr"
for a in $("$bb/bin/busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$bb/bin/$a"; done
chmod 1777 "$bb/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$bb/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$bb/etc/group"
tar -C "$bb" --numeric-owner -cf "$ctx/busybox.tar" .
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["sh"]' "$ctx/busybox.tar" "$K/busybox:1.37.0-1" >/dev/null
log "built $K/busybox:1.37.0-1"

printf '%s\n' "${images[@]}" > "$stamp"
cat "$stamp"
