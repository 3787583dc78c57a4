#!/usr/bin/env bash
# Builds the monitoring and packaging tools the tests and the e2e use, from
# the Go module proxy at pinned versions (no git, no registry, no release
# tarballs):
#   hack/build-tools.sh promtool helm promql-names [prometheus] [multus]
# Prints nothing but each binary's path on stdout, one a line, in argument
# order; binaries land in ${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}/tools/
# named <tool>-<version> (worktrees at different versions share the cache
# without clobbering each other) and are reused when present.
#
# Unlike k8s.io/kubernetes (hack/build-kube.sh), neither module has replace
# directives, so `go install <pkg>@<version>` builds with exactly the
# dependency versions upstream pinned in its go.mod: no wrapper module or
# `go mod tidy` that could pick different ones. promql-names is ours: a
# module of its own under hack/promql-names (Prometheus' PromQL parser),
# versioned by the hash of its source, so the parser's dependencies stay out
# of the agent's go.mod. Multus (the thin plugin, cmd/multus, for the
# Multus e2e variant and the tests that run our plugin as its delegate) is
# the exception: its go.mod pins k8s.io/* with a replace block, and replace
# directives of a dependency are ignored, so it is built inside a wrapper
# module carrying a copy of that block (the reason hack/build-kube.sh
# rewrites Kubernetes' staging modules).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0} # Prometheus 3.16.0
HELM_VERSION=${HELM_VERSION:-v3.22.0}
MULTUS_VERSION=${MULTUS_VERSION:-v4.1.0}
cache=${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}
out=$cache/tools
mkdir -p "$out"

pkg() {
  case $1 in
    promtool) echo "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" ;;
    prometheus) echo "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" ;;
    helm) echo "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    promql-names) echo "./hack/promql-names@$(cat "$root"/hack/promql-names/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)" ;;
    multus) echo "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus@$MULTUS_VERSION" ;;
    *) echo "build-tools: unknown tool $1 (known: promtool prometheus helm promql-names multus)" >&2; return 1 ;;
  esac
}
bin() { local p; p=$(pkg "$1"); echo "$out/$1-${p##*@}"; }

missing() {
  want=()
  for t in "$@"; do [[ -x $(bin "$t") ]] || want+=("$t"); done
}
report() { for t in "$@"; do bin "$t"; done; }

for t in "$@"; do pkg "$t" >/dev/null; done
missing "$@"
if ((${#want[@]} == 0)); then report "$@"; exit 0; fi

exec 9>"$cache/tools-build.lock"; flock 9 # one build at a time, shared cache
missing "$@"                              # a concurrent caller may have built some
for t in "${want[@]}"; do
  # Prometheus compiles every service discovery (AWS, Azure, GCE, ...) in
  # by default; promtool and the e2e need none but Kubernetes'.
  tags=()
  [[ $t == promtool || $t == prometheus ]] && tags=(-tags remove_all_sd,enable_kubernetes_sd)
  tmp=$(mktemp -d "$out/.build.XXXXXX")
  if [[ $t == multus ]]; then
    # About 4 min cold on 2 cores.
    echo "build-tools: building $t $(pkg "$t") (first run only, about 4 min)" >&2
    mod=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
    (
      cd "$tmp"
      go mod init authbridge-multus-wrapper >/dev/null 2>&1
      src=$(go mod download -json "$mod@$MULTUS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0}' "$src/go.mod" >>go.mod # Multus' replace block, verbatim
      go get "$mod/cmd/multus@$MULTUS_VERSION"
      CGO_ENABLED=0 go build -ldflags "-s -w" -o "$t" "$mod/cmd/multus"
      rm -f go.mod go.sum
    ) >&2
  elif [[ $t == promql-names ]]; then
    echo "build-tools: building $t (first run only, about 1 min)" >&2
    (cd "$root/hack/promql-names" && CGO_ENABLED=0 go build -mod=readonly -o "$tmp/$t" .) >&2
  else
    # Measured on 2 cores shared with other builds (load ~25): promtool
    # 10 min, helm 5 min.
    mins=5; [[ $t == prom* ]] && mins=10
    echo "build-tools: building $t $(pkg "$t") (first run only, about $mins min)" >&2
    GOBIN=$tmp CGO_ENABLED=0 go install "${tags[@]}" -ldflags "-s -w" "$(pkg "$t")" >&2
  fi
  mv "$tmp/$t" "$(bin "$t")"
  rmdir "$tmp"
done
report "$@"
