#!/usr/bin/env bash
# Builds, without any registry, the images kubeadm expects under the exact
# names `kubeadm config images list` prints, plus the "tools" image (Debian
# minbase with iptables/nftables; base of kube-proxy and of the proxy-init
# style iptables image used for the pod start-time figures), and saves them
# to one tarball for import into the node image's containerd.
#   images.sh   -> prints the tarball path
set -euo pipefail
source "$(dirname "$0")/lib.sh"
kube=$(bash "$REPO_ROOT/hack/build-kube.sh" kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
bash "$(dirname "$0")/tools.sh" etcd coredns pause
tools_tar=$(bash "$(dirname "$0")/rootfs.sh" tools)
key=$( { echo "$KUBE_VERSION $ETCD_VERSION $COREDNS_VERSION $PAUSE_VERSION $(basename "$tools_tar")"; cat "$0"; } | sha256sum | cut -c1-12)
TOOLS_IMAGE=authbridge-e2e/tools:$key
out=$E2E_CACHE/images/control-plane-$KUBE_VERSION-$key.tar
ensure_dockerd
if ! docker image inspect "$TOOLS_IMAGE" >/dev/null 2>&1; then
  docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$tools_tar" "$TOOLS_IMAGE" >/dev/null
fi
echo "$TOOLS_IMAGE" > "$E2E_CACHE/images/tools-image"
if [[ -s $out ]]; then echo "$out"; exit 0; fi

mapfile -t want < <("$kube/kubeadm" config images list --kubernetes-version "$KUBE_VERSION")
ctx=$E2E_CACHE/images/ctx; rm -rf "$ctx"; mkdir -p "$ctx"
# mkimage NAME FROM SRC DEST [ENTRYPOINT]
mkimage() {
  local name=$1 from=$2 src=$3 dest=$4 ep=${5:-}
  local d=$ctx/$(echo "$name" | tr '/:' '__'); mkdir -p "$d"
  cp "$src" "$d/bin"
  {
    echo "FROM $from"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "COPY bin $dest"
    [[ -n $ep ]] && echo "ENTRYPOINT [\"$ep\"]"
  } > "$d/Dockerfile"
  docker build -q -t "$name" "$d" >/dev/null || die "docker build $name failed"
}
for img in "${want[@]}"; do
  base=${img##*/}; base=${base%%:*}
  case $base in
    kube-apiserver|kube-controller-manager|kube-scheduler)
      mkimage "$img" scratch "$kube/$base" "/usr/local/bin/$base" "/usr/local/bin/$base" ;;
    kube-proxy) mkimage "$img" "$TOOLS_IMAGE" "$kube/kube-proxy" /usr/local/bin/kube-proxy /usr/local/bin/kube-proxy ;;
    etcd) mkimage "$img" scratch "$E2E_BIN/etcd-$ETCD_VERSION" /usr/local/bin/etcd /usr/local/bin/etcd ;;
    coredns) mkimage "$img" scratch "$E2E_BIN/coredns-$COREDNS_VERSION" /coredns /coredns ;;
    pause) mkimage "$img" scratch "$E2E_BIN/pause-$PAUSE_VERSION" /pause /pause ;;
    *) die "kubeadm wants $img, which this script does not know how to build" ;;
  esac
  log "built $img"
done
printf '%s\n' "${want[@]}" > "$out.list"
docker save "${want[@]}" -o "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
