#!/usr/bin/env bash
# Builds Kubernetes binaries from the Go module proxy (no git, no registry).
#   hack/build-kube.sh kube-apiserver [kubelet kubeadm ...]
# Prints nothing but the output dir on stdout; binaries land in
#   ${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}/kube/$KUBE_VERSION/
# and are reused when present. k8s.io/kubernetes replaces its staging modules
# with local paths, so a wrapper module requires it and points each staging
# module at its published k8s.io/<name>@v0.<minor>.<patch>.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
cache=${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}
out=$cache/kube/$KUBE_VERSION
src=$cache/kube-src/$KUBE_VERSION
mkdir -p "$out" "$src"
want=()
for c in "$@"; do [[ -x $out/$c ]] || want+=("$c"); done
if ((${#want[@]} == 0)); then echo "$out"; exit 0; fi

exec 9>"$cache/kube-build.lock"; flock 9   # one build at a time, shared cache
# Re-check under the lock: a concurrent caller may have just built some.
want=()
for c in "$@"; do [[ -x $out/$c ]] || want+=("$c"); done
if ((${#want[@]} == 0)); then echo "$out"; exit 0; fi
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}; patch=${KUBE_VERSION##*.}
staging_ver=v0.$minor.$patch
cd "$src"
if [[ ! -f go.mod ]]; then
  cat > go.mod <<EOM
module kubewrapper

go 1.24
EOM
  go mod edit -require=k8s.io/kubernetes@$KUBE_VERSION
  GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@$KUBE_VERSION
  kdir=$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION
  grep -oE '^\s*k8s.io/[a-z0-9-]+ => \./staging' "$kdir/go.mod" | awk '{print $1}' | while read -r m; do
    go mod edit -replace="$m=$m@$staging_ver"
  done
fi
{
  echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
  for c in kube-apiserver kubelet kubeadm kube-controller-manager kube-scheduler kube-proxy kubectl; do
    echo "	_ \"k8s.io/kubernetes/cmd/$c\""
  done
  echo ')'
} > tools.go
[[ -f go.sum && -f .tidy-ok ]] || { GOFLAGS=-mod=mod go mod tidy >&2 && touch .tidy-ok; }
ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
for c in "${want[@]}"; do
  echo "build-kube: building $c $KUBE_VERSION" >&2
  CGO_ENABLED=0 go build -tags tools -ldflags "$ld" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
  mv "$out/$c.tmp" "$out/$c"
done
echo "$out"
