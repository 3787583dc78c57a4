# authbridge-node. Every target installs what it needs (hack/install-deps.sh).
SHELL := /bin/bash
GO ?= go
BIN := bin
export CGO_ENABLED ?= 0

.PHONY: all build deps tools kube-apiserver test test-short demo bench vet fmt image e2e e2e-down e2e-conformance clean kata-guest-policy

all: build

deps:
	bash hack/install-deps.sh

build:
	@echo "build: authbridge-cni and node-agent (first run: module downloads and client-go, about 9 min on 2 busy cores; then seconds)"
	$(GO) build -o $(BIN)/authbridge-cni ./cmd/cni-plugin
	$(GO) build -o $(BIN)/node-agent ./cmd/node-agent

# kube-apiserver for the tests and the demo, built once from the Go module
# proxy and cached (hack/build-kube.sh prints one line per step). Built here,
# before go test starts, so no test timeout covers a first build.
kube-apiserver:
	@bash hack/build-kube.sh kube-apiserver >/dev/null

vet:
	@echo "vet: go vet ./... and gofmt (a first run compiles the dependencies, minutes)"
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | grep -v '^third_party/')" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }

# promtool, helm, promql-names (Prometheus' PromQL parser) and Multus from the Go
# module proxy, cached; built here so no test waits for them under its
# timeout.
tools:
	bash hack/build-tools.sh promtool helm promql-names multus >/dev/null

# The tests: real network namespaces, real kernel rules, real CNI chain,
# real kube-apiserver, real promtool and helm; they need root, and fail when
# any test skipped.
test: deps vet tools kube-apiserver
	@echo "test: go test ./... as root, every test must run (about 2 min with warm caches; a first run compiles every test binary, minutes)"
	bash hack/test.sh

# The pure tests, as any user, no root, no kube-apiserver: seconds. Tests that
# need root or a kube-apiserver skip with the reason.
test-short:
	$(GO) test -count=1 -short ./...

demo: deps build
	bash hack/demo.sh

bench: deps kube-apiserver
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/... ./internal/... | tee bench.txt

image:
	bash hack/image.sh

e2e:
	bash test/e2e/run.sh

e2e-down:
	bash test/e2e/down.sh

# Kubernetes' own [sig-network] conformance tests on the kind cluster of
# make e2e, without and with the plugin (test/e2e/README.md, "Kubernetes
# conformance"). Not in CI, not part of make test; first run builds e2e.test
# (tens of minutes on 2 cores).
e2e-conformance:
	bash test/e2e/conformance.sh

# A Kata guest image with the restrictive policy built in, for guests whose
# image the node must not change (TEE / measured root file systems): runs
# kata-containers' osbuilder (KATA_SRC: a checkout of tag 4.1.0; needs
# docker and root) with AGENT_POLICY=yes and this repository's policy, and
# MEASURED_ROOTFS=yes so the image gets a dm-verity hash partition; the
# root hash lands in image-builder/root_hash_*.txt for kernel_verity_params
# and your attestation reference values. Not run by this repository's
# tests (no Kata guest can be built there).
KATA_SRC ?=
KATA_DISTRO ?= ubuntu
KATA_POLICY ?= $(CURDIR)/policy/default-restrictive.rego
kata-guest-policy:
	@test -n "$(KATA_SRC)" || { echo "kata-guest-policy: set KATA_SRC to a kata-containers checkout (tag 4.1.0)"; exit 2; }
	# Inside the kata tree, which osbuilder's build container sees.
	cp "$(KATA_POLICY)" "$(KATA_SRC)/src/kata-opa/authbridge-restrictive.rego"
	cd "$(KATA_SRC)/tools/osbuilder/rootfs-builder" && \
	  USE_DOCKER=true AGENT_POLICY=yes AGENT_POLICY_FILE="$(KATA_SRC)/src/kata-opa/authbridge-restrictive.rego" ./rootfs.sh "$(KATA_DISTRO)"
	cd "$(KATA_SRC)/tools/osbuilder/image-builder" && \
	  USE_DOCKER=true MEASURED_ROOTFS=yes ./image_builder.sh "../rootfs-builder/rootfs-$(KATA_DISTRO)"

clean:
	rm -rf $(BIN) bench.txt
