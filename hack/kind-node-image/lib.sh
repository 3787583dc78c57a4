# Shared settings and helpers for the offline kind pipeline (sourced).
# Everything built lands under $E2E_CACHE, keyed by version, and is reused.
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}        # kubeadm 1.34 DefaultEtcdVersion 3.6.5-0
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1} # kubeadm 1.34 CoreDNSVersion
PAUSE_VERSION=${PAUSE_VERSION:-3.10.1}      # kubeadm 1.34 PauseVersion
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
# The node's runtime: containerd 2.x built from the module proxy (the version
# kind v0.33.0's own base image builds), as current kind images and managed
# clusters run it; CONTAINERD=1.6 takes Debian bookworm's containerd instead.
CONTAINERD=${CONTAINERD:-2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.4}
# E2E_VARIANT=crio: one worker whose runtime is CRI-O (built from the module
# proxy with cgo; conmon, crun, runc and skopeo from Debian).
CRIO_VERSION=${CRIO_VERSION:-v1.34.0}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
AUTHBRIDGE_CACHE=${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}
E2E_CACHE=$AUTHBRIDGE_CACHE/e2e
E2E_BIN=$E2E_CACHE/bin
E2E_LOGS=$E2E_CACHE/logs
E2E_TIMINGS=${E2E_TIMINGS:-$E2E_LOGS/timings.log}
REPO_ROOT=${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# E2E_VARIANT=name (test/e2e/variant-<name>.sh) gets its own cluster and
# kubeconfig, so a variant and the default run side by side; so does any
# other CLUSTER_NAME: two clusters up at once must never share a file whose
# current-context the other's `kind create` moves.
CLUSTER_NAME=${CLUSTER_NAME:-authbridge-${E2E_VARIANT:-e2e}}
if [[ -n ${E2E_VARIANT:-} || $CLUSTER_NAME == authbridge-e2e ]]; then
  E2E_KUBECONFIG=$E2E_CACHE/kubeconfig${E2E_VARIANT:+-$E2E_VARIANT}
else
  E2E_KUBECONFIG=$E2E_CACHE/kubeconfig-$CLUSTER_NAME
fi
# The agent image this worktree built, per variant: two clusters built from
# different trees at once must not load each other's agent.
E2E_AGENT_IMAGE_FILE=$E2E_CACHE/images/agent-image${E2E_VARIANT:+-$E2E_VARIANT}
export PATH=$E2E_BIN:$PATH
mkdir -p "$E2E_BIN" "$E2E_LOGS" "$E2E_CACHE/rootfs" "$E2E_CACHE/images"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# step NAME CMD...: runs CMD, records its wall time in $E2E_TIMINGS.
step() {
  local name=$1; shift
  local t0=$SECONDS
  log "==> $name"
  "$@" || die "step $name failed"
  local dt=$((SECONDS - t0))
  printf '%s\t%s\t%ds\n' "$(date -u +%FT%TZ)" "$name" "$dt" >> "$E2E_TIMINGS"
  log "<== $name (${dt}s)"
}

# ensure_dockerd starts Debian's dockerd in the background if none answers.
# When this machine's capability bounding set lacks capabilities the kernel
# knows (no CAP_SYS_RESOURCE here), --privileged containers (kind's nodes)
# fail in runc; dockerd then gets runc-capfit as its default runtime, which
# drops the capabilities we do not have before calling runc. A dockerd that
# is already running without it is restarted only if we started it.
caps_missing() { [[ $(awk '/^CapBnd/{print $2}' /proc/self/status) != $(printf '%016x' $(( (1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1 ))) ]]; }
ensure_dockerd() {
  local args=()
  if caps_missing; then
    [[ -x $E2E_BIN/runc-capfit ]] || (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -o "$E2E_BIN/runc-capfit" ./hack/kind-node-image/runc-capfit) || die "building runc-capfit failed"
    args=(--add-runtime "capfit=$E2E_BIN/runc-capfit" --default-runtime capfit)
  fi
  if docker info >/dev/null 2>&1; then
    if ((${#args[@]})) && [[ $(docker info -f '{{.DefaultRuntime}}') != capfit ]]; then
      [[ -f $E2E_CACHE/dockerd.pid ]] && [[ $(cat "$E2E_CACHE/dockerd.pid") == "$(pgrep -xo dockerd)" ]] ||
        die "dockerd runs without the capfit runtime and was not started by this pipeline: privileged kind nodes will fail (restart it with: dockerd ${args[*]})"
      log "restarting our dockerd with the capfit runtime"
      kill "$(cat "$E2E_CACHE/dockerd.pid")"
      for _ in $(seq 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
    else
      return 0
    fi
  fi
  log "starting dockerd ${args[*]} (log: $E2E_LOGS/dockerd.log)"
  nohup dockerd "${args[@]}" >>"$E2E_LOGS/dockerd.log" 2>&1 &
  echo $! > "$E2E_CACHE/dockerd.pid"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  die "dockerd did not come up; see $E2E_LOGS/dockerd.log"
}

# ensure_inotify raises the host's inotify limits to what kind's known-issues
# page asks for: every kind node runs systemd, a kubelet and a runtime that
# each take inotify instances, and the kernel default (128 per user) runs out
# with two or three clusters up ("inotify_init: too many open files" from
# the control plane, seen here). Only ever raised, never lowered.
ensure_inotify() {
  local key want have
  for kv in fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288; do
    key=${kv%=*} want=${kv#*=}
    have=$(sysctl -n "$key")
    if ((have < want)); then
      log "raising $key from $have to $want (kind nodes need inotify instances)"
      sysctl -qw "$key=$want" || die "cannot set $key=$want"
    fi
  done
}

# gobuild OUT PKG@VERSION [tags]: go install into a versioned cache path.
# Modules whose go.mod has replace directives cannot be `go install`ed
# at a version, so each is built from a tiny wrapper module instead.
gobuild() {
  local out=$1 modpath=$2 tags=${3:-}
  [[ -x $out ]] && return 0
  local pkg=${modpath%@*} ver=${modpath##*@}
  local w=$E2E_CACHE/gowrap/$(basename "$out")
  mkdir -p "$w"
  log "building $pkg@$ver -> $out"
  if GOBIN=$w/bin CGO_ENABLED=0 GOFLAGS=-mod=mod go install -tags "$tags" -ldflags '-s -w' "$pkg@$ver" >"$w/install.log" 2>&1; then
    mv "$w/bin/$(basename "$pkg")" "$out"
    return 0
  fi
  die "go install $pkg@$ver failed: $(tail -5 "$w/install.log")"
}
