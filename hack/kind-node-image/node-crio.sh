#!/usr/bin/env bash
# Builds the node image of the E2E_VARIANT=crio workers: the default node
# image (node.sh: kind's base files, kubelet, crictl, CNI plugins) with CRI-O
# as its runtime in place of containerd. CRI-O and pinns are built from the Go
# module proxy (tools.sh crio), conmon and skopeo come from Debian, runc is
# Debian's behind runc-capfit, and the images a worker needs without a
# registry (pause, kube-proxy, CoreDNS) are imported into containers-storage
# at boot by crio-preload.service. Its own tag (authbridge-e2e/node-crio:...),
# so the default node image is never touched.
#   node-crio.sh   -> prints the image name
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
ensure_dockerd
bash "$here/tools.sh" crio
base=$(bash "$here/node.sh")
images_tar=$(bash "$here/images.sh")
mapfile -t imgs < <(grep -E '/(pause|kube-proxy|coredns):' "$images_tar.list")
((${#imgs[@]} == 3)) || die "want pause, kube-proxy and coredns in $images_tar.list, got: ${imgs[*]}"
key=$( { docker image inspect -f '{{.Id}}' "$base"; echo "$CRIO_VERSION ${imgs[*]}"; cat "$0";
  (cd "$here" && find crio runc-capfit -type f | sort | xargs cat); } | sha256sum | cut -c1-12)
img=authbridge-e2e/node-crio:$KUBE_VERSION-$key
echo "$img" > "$E2E_CACHE/images/node-crio-image"
if docker image inspect "$img" >/dev/null 2>&1; then echo "$img"; exit 0; fi

ctx=$E2E_CACHE/images/node-crio-ctx; rm -rf "$ctx"; mkdir -p "$ctx/bin"
cp -r "$here/crio" "$ctx/files"
cp "$E2E_BIN/crio-$CRIO_VERSION/crio" "$E2E_BIN/crio-$CRIO_VERSION/pinns" "$ctx/bin/"
(cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ctx/bin/runc-capfit" ./hack/kind-node-image/runc-capfit)
docker save "${imgs[@]}" -o "$ctx/images.tar"
printf '%s\n' "${imgs[@]}" > "$ctx/images.list"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $base
# conmon and skopeo from Debian (the mirror debootstrap uses)
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends conmon skopeo >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY bin/ /usr/local/bin/
COPY files/etc/ /etc/
COPY files/kind/ /kind/
COPY images.tar images.list /kind/crio-images/
# containerd stays installed (kind's config action only restarts it if it
# runs) but is not started; its imported images are not needed here.
RUN chmod 755 /usr/local/bin/crio /usr/local/bin/pinns /usr/local/bin/runc-capfit /kind/bin/crio-preload.sh \
 && rm -rf /var/lib/containerd \
 && systemctl disable containerd.service \
 && systemctl enable crio.service crio-preload.service \
 && crio --version >/dev/null && conmon --version >/dev/null && skopeo --version >/dev/null
DOCKERFILE
docker build -q -t "$img" "$ctx" >/dev/null || die "docker build of the CRI-O node image failed"
rm -f "$ctx/images.tar"
echo "$img"
