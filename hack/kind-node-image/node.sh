#!/usr/bin/env bash
# Builds the kind node image offline, the way `kind build node-image` does
# minus every pull (see pkg/build/nodeimage/buildcontext.go in the kind
# module): a base image from a debootstrap rootfs plus kind's base-image files,
# the Kubernetes binaries in /usr/bin, then a build container whose containerd
# imports the control-plane images, /kind/version written, `docker commit`.
#   node.sh   -> prints the node image name (authbridge-e2e/node:<kube>-<key>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
ensure_dockerd
kube=$(bash "$REPO_ROOT/hack/build-kube.sh" kubelet kubeadm kubectl)
case $CONTAINERD in
  2) bash "$here/tools.sh" crictl cni containerd; runtime="containerd $CONTAINERD_VERSION" ;;
  1.6) bash "$here/tools.sh" crictl cni; runtime="containerd 1.6 (Debian $DEBIAN_SUITE)" ;;
  *) die "CONTAINERD=$CONTAINERD: want 2 (built from the module proxy, default) or 1.6 (Debian's)" ;;
esac
node_tar=$(bash "$here/rootfs.sh" node)
base_key=$( { echo "$KUBE_VERSION $CRICTL_VERSION $CNI_PLUGINS_VERSION $KIND_VERSION $PAUSE_VERSION $runtime"; basename "$node_tar"; cat "$0"; } | sha256sum | cut -c1-12)
base_img=authbridge-e2e/node-base:$base_key

build_base() {
kindsrc=$(cd "$E2E_CACHE" && mkdir -p kindmod && cd kindmod && { [[ -f go.mod ]] || printf 'module kindmod\n\ngo 1.24\n' > go.mod; } &&
  GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[[ -d $kindsrc/images/base/files ]] || die "kind module source not found ($kindsrc)"

  # 1. base image: rootfs + kind's base files (what images/base/Dockerfile does)
rootfs_img=authbridge-e2e/node-rootfs:$(basename "$node_tar" .tar)
docker image inspect "$rootfs_img" >/dev/null 2>&1 || docker import "$node_tar" "$rootfs_img" >/dev/null
ctx=$E2E_CACHE/images/node-ctx; rm -rf "$ctx"; mkdir -p "$ctx/bin" "$ctx/cni" "$ctx/containerd"
cp -r "$kindsrc/images/base/files" "$ctx/files"; chmod -R u+w "$ctx/files"
# Debian's containerd 1.6 lives in /usr/bin; no fuse-overlayfs here (rootful
# only). restrict_oom_score_adj: without CAP_SYS_RESOURCE (see runc-capfit)
# runc cannot lower oom_score_adj; containerd then clamps it, as kind does
# for rootless nodes.
sed -i '/^\[proxy_plugins/,/^$/d; /fuse-overlayfs is used/d; s/restrict_oom_score_adj = false/restrict_oom_score_adj = true/; s#registry.k8s.io/pause:3.10"#registry.k8s.io/pause:'"$PAUSE_VERSION"'"#' "$ctx/files/etc/containerd/config.toml"
grep -q "pause:$PAUSE_VERSION" "$ctx/files/etc/containerd/config.toml" && grep -q 'restrict_oom_score_adj = true' "$ctx/files/etc/containerd/config.toml" ||
  die "could not set sandbox_image / restrict_oom_score_adj in kind's containerd config"
for b in kubelet kubeadm kubectl; do cp "$kube/$b" "$ctx/bin/"; done
cp "$E2E_BIN/crictl-$CRICTL_VERSION" "$ctx/bin/crictl"
cp "$E2E_BIN/cni-$CNI_PLUGINS_VERSION"/* "$ctx/cni/"
# containerd 2.x goes to /usr/local/bin, where kind's containerd.service runs
# it from (ahead of Debian's 1.6 in /usr/bin on PATH, so the daemon finds
# the 2.x shim); with CONTAINERD=1.6 Debian's binary is linked there.
if [[ $CONTAINERD == 2 ]]; then
  cp "$E2E_BIN/containerd-$CONTAINERD_VERSION"/* "$ctx/containerd/"
  install_runtime='cp /tmp/containerd/* /usr/local/bin/ && chmod 755 /usr/local/bin/containerd /usr/local/bin/containerd-shim-runc-v2 /usr/local/bin/ctr && rm -rf /tmp/containerd'
else
  install_runtime='ln -sf /usr/bin/containerd /usr/local/bin/containerd && rm -rf /tmp/containerd'
fi
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $rootfs_img
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY bin/kubelet bin/kubeadm bin/kubectl /usr/bin/
COPY bin/crictl /usr/local/bin/crictl
COPY cni/ /opt/cni/bin/
COPY containerd/ /tmp/containerd/
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* /usr/bin/kube* /opt/cni/bin/* \
 && $install_runtime \
 && containerd --version \
 && rm -f /etc/systemd/system/containerd-fuse-overlayfs.service \
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
 && rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
 && rm -f /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
 && ln -sf /usr/lib/systemd/systemd /sbin/init \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && mkdir -p /etc/kubernetes/manifests /etc/cni/net.d \
 && ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
DOCKERFILE
docker build -q -t "$base_img" "$ctx" >/dev/null || die "docker build of the node base image failed"
}
docker image inspect "$base_img" >/dev/null 2>&1 || build_base

images_tar=$(bash "$here/images.sh")
key=$( { echo "$base_img"; basename "$images_tar"; } | sha256sum | cut -c1-12)
NODE_IMAGE=authbridge-e2e/node:$KUBE_VERSION-$key
echo "$NODE_IMAGE" > "$E2E_CACHE/images/node-image"
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then echo "$NODE_IMAGE"; exit 0; fi

# 2. import the control-plane images into the image's containerd and commit
cid=authbridge-node-build-$key
docker rm -f "$cid" >/dev/null 2>&1 || true
docker run -d --name "$cid" --entrypoint=sleep --security-opt seccomp=unconfined "$base_img" infinity >/dev/null
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
docker exec "$cid" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
docker exec "$cid" bash -c 'for i in $(seq 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /tmp/containerd.log; exit 1' \
  || die "containerd did not start in the build container"
docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - < "$images_tar" >/dev/null \
  || die "ctr import of $images_tar failed"
missing=$(docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -vxFf - "$images_tar.list" || true)
[[ -z $missing ]] || die "images missing after import: $missing"
docker exec "$cid" bash -c "echo -n $KUBE_VERSION > /kind/version && pkill containerd; sleep 1; rm -rf /tmp/containerd.log"
docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$cid" "$NODE_IMAGE" >/dev/null
echo "$NODE_IMAGE"
