#!/usr/bin/env bash
# Builds Kubernetes' conformance test binary and its Go test image from the
# Go module proxy (no git, no registry), for the conformance run
# (test/e2e/conformance.sh):
#   hack/build-kube-e2e.sh e2e.test [ginkgo] [agnhost] [regression-issue-74839]
# e2e.test is `go test -c k8s.io/kubernetes/test/e2e` (ginkgo is built in);
# the ginkgo CLI (the version Kubernetes' go.mod pins) is there only to
# run it in parallel processes (ginkgo --procs);
# agnhost and regression-issue-74839 are the Go test images of the same
# module (k8s.io/kubernetes/test/images/...), static; agnhost with the
# version its VERSION file names (the tag test/utils/image/manifest.go
# expects).
# Prints nothing but the output dir on stdout; binaries land next to the
# kube binaries in ${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}/kube/$KUBE_VERSION/
# and are reused when present.
#
# Same wrapper-module approach as hack/build-kube.sh (k8s.io/kubernetes
# replaces its staging modules with local paths, so a wrapper requires it and
# points each staging module at k8s.io/<name>@v0.<minor>.<patch>), in its own
# directory and under its own lock: go mod tidy of the test packages must not
# touch the wrapper the kube binaries are built from, and a long e2e.test
# build must not hold up a kube-apiserver build.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
cache=${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}
out=$cache/kube/$KUBE_VERSION
src=$cache/kube-src/$KUBE_VERSION-e2e
mkdir -p "$out" "$src"
for c in "$@"; do
  case $c in e2e.test|ginkgo|agnhost|regression-issue-74839) ;; *) echo "build-kube-e2e: unknown target $c (want e2e.test, ginkgo, agnhost or regression-issue-74839)" >&2; exit 2 ;; esac
done
want=()
for c in "$@"; do [[ -x $out/$c ]] || want+=("$c"); done
if ((${#want[@]} == 0)); then echo "$out"; exit 0; fi

say() { echo "build-kube-e2e: $*" >&2; }
took() { local s=$((SECONDS - $1)); say "  done in $((s / 60)) min $((s % 60)) s"; }
exec 9>"$cache/kube-e2e-build.lock"
if ! flock -n 9; then   # one build at a time, shared cache
  say "another build holds $cache/kube-e2e-build.lock; waiting for it"
  flock 9
fi
want=()
for c in "$@"; do [[ -x $out/$c ]] || want+=("$c"); done
if ((${#want[@]} == 0)); then echo "$out"; exit 0; fi
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}; patch=${KUBE_VERSION##*.}
staging_ver=v0.$minor.$patch
cd "$src"
kdir=$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION
if [[ ! -f go.mod ]]; then
  say "downloading k8s.io/kubernetes $KUBE_VERSION from the Go module proxy: first run only"
  t0=$SECONDS
  printf 'module kubee2ewrapper\n\ngo 1.24\n' > go.mod.tmp
  mv go.mod.tmp go.mod
  go mod edit -require=k8s.io/kubernetes@$KUBE_VERSION
  GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@$KUBE_VERSION
  grep -oE '^\s*k8s.io/[a-z0-9-]+ => \./staging' "$kdir/go.mod" | awk '{print $1}' | while read -r m; do
    go mod edit -replace="$m=$m@$staging_ver"
  done
  took $t0
fi
# go mod tidy keeps what the wrapper's own packages import, not the imports
# of a dependency's _test.go files: tools.go imports every non-standard
# package test/e2e/e2e_test.go imports, so `go test -c` finds them all.
{
  echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
  echo '	_ "k8s.io/kubernetes/test/e2e"'
  echo '	_ "k8s.io/kubernetes/test/images/agnhost"'
  echo '	_ "github.com/onsi/ginkgo/v2/ginkgo"'
  echo '	_ "k8s.io/kubernetes/test/images/regression-issue-74839"'
  sed -n '/^import (/,/^)/p' "$kdir/test/e2e/e2e_test.go" | grep -oE '"[a-z0-9.-]+\.[a-z]+/[^"]+"' | sort -u | sed 's/^/	_ /'
  echo ')'
} > tools.go.tmp
if ! cmp -s tools.go.tmp tools.go; then mv tools.go.tmp tools.go; rm -f .tidy-ok; else rm tools.go.tmp; fi
if [[ ! -f go.sum || ! -f .tidy-ok ]]; then
  say "downloading the modules the e2e suite needs (go mod tidy): first run only, a few minutes"
  t0=$SECONDS
  GOFLAGS=-mod=mod go mod tidy >&2 && touch .tidy-ok
  took $t0
fi
ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
for c in "${want[@]}"; do
  t0=$SECONDS
  case $c in
    e2e.test)
      say "building e2e.test $KUBE_VERSION (go test -c k8s.io/kubernetes/test/e2e): first run only, 20-40 min on 2 busy cores"
      CGO_ENABLED=0 go test -c -ldflags "$ld" -o "$out/e2e.test.tmp" k8s.io/kubernetes/test/e2e >&2
      mv "$out/e2e.test.tmp" "$out/e2e.test" ;;
    agnhost)
      v=$(cat "$kdir/test/images/agnhost/VERSION")
      say "building agnhost $v (k8s.io/kubernetes/test/images/agnhost $KUBE_VERSION): first run only, a few minutes"
      CGO_ENABLED=0 go build -tags tools -ldflags "-s -w -X main.Version=$v" -o "$out/agnhost.tmp" k8s.io/kubernetes/test/images/agnhost >&2
      mv "$out/agnhost.tmp" "$out/agnhost" ;;
    ginkgo)
      say "building the ginkgo CLI ($(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2))"
      CGO_ENABLED=0 go build -tags tools -ldflags "-s -w" -o "$out/ginkgo.tmp" github.com/onsi/ginkgo/v2/ginkgo >&2
      mv "$out/ginkgo.tmp" "$out/ginkgo" ;;
    regression-issue-74839)
      say "building regression-issue-74839 (k8s.io/kubernetes/test/images/regression-issue-74839 $KUBE_VERSION)"
      CGO_ENABLED=0 go build -tags tools -ldflags "-s -w" -o "$out/$c.tmp" "k8s.io/kubernetes/test/images/$c" >&2
      mv "$out/$c.tmp" "$out/$c" ;;
  esac
  took $t0
done
echo "$out"
