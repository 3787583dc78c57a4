# authbridge-node. Every target installs what it needs (hack/install-deps.sh).
SHELL := /bin/bash
GO ?= go
BIN := bin
export CGO_ENABLED ?= 0

.PHONY: all build deps test demo bench vet fmt image e2e e2e-down clean

all: build

deps:
	bash hack/install-deps.sh

build:
	$(GO) build -o $(BIN)/authbridge-cni ./cmd/cni-plugin
	$(GO) build -o $(BIN)/node-agent ./cmd/node-agent

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | grep -v '^third_party/')" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }

# The tests: real network namespaces, real kernel rules, real CNI chain,
# real kube-apiserver; they need root.
test: deps vet
	$(GO) test -count=1 -timeout 40m ./...

demo: deps build
	bash hack/demo.sh

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/... | tee bench.txt

image:
	bash hack/image.sh

e2e:
	bash test/e2e/run.sh

e2e-down:
	bash test/e2e/down.sh

clean:
	rm -rf $(BIN) bench.txt
