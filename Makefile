# The Makefile is the contract CI runs (.ci/run calls `make ci`).
# Tools are pinned in tools/go.mod and built into ./bin from the Go module
# proxy; nothing else is downloaded.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
# Every module of the workspace (no root go.mod: tools run per module).
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
PKGS := $(shell go list -m 2>/dev/null | sed 's|$$|/...|')
TOOLS := github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc github.com/fullstorydev/grpcurl/cmd/grpcurl \
	helm.sh/helm/v3/cmd/helm
# The e2e package alone runs 13-15 minutes under -race on two quiet cores;
# 20 minutes timed out (in TestImportLarge) on a machine other work shared.
GOTEST_FLAGS ?= -race -count=1 -timeout 35m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Build the pinned tools (buf, protoc plugins) into ./bin.
	@cd tools && GOWORK=off go build -o $(BIN)/ $(TOOLS)

.PHONY: generate
generate: tools ## Regenerate proto/gen from proto/ with buf.
	buf generate

.PHONY: check-generated
check-generated: generate ## Fail if regenerating changes anything under proto/gen.
	@git add -N proto/gen >/dev/null 2>&1 || true
	@git diff --exit-code --stat -- proto/gen || { echo "proto/gen is stale: run 'make generate' and commit"; exit 1; }

.PHONY: lint
lint: tools ## gofmt, go vet, buf lint, buf breaking against main, helm lint/template, go mod tidy -diff, pkg/client's dependency graph.
	@out=$$(gofmt -l $(MODULES) tools 2>&1); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	buf lint
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto 2>/dev/null; then \
		echo "buf breaking --against .git#branch=main"; buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: main has no proto yet, skipped"; fi
	helm lint --strict --kube-version 1.33.0 deploy/helm/veltrix
	helm template veltrix deploy/helm/veltrix --kube-version 1.33.0 >/dev/null
	@for m in $(MODULES) $(CURDIR)/tools; do \
		(cd $$m && GOWORK=off go mod tidy -diff >/dev/null) || { echo "go mod tidy needed in $$m"; exit 1; }; \
	done
	@# The client module must not reach etcd, Pebble, Prometheus or pkg (also part of make test).
	go test -count=1 -run '^TestDependencies$$' ./pkg/client

.PHONY: e2e-deps
e2e-deps: ## Install the npm packages the e2e tests use (Node gRPC client, kinesalite, dynalite).
	@for d in e2e/node e2e/peers; do \
		[ -f $$d/package-lock.json ] || continue; \
		if [ -f $$d/node_modules/.package-lock.json ] && [ $$d/node_modules/.package-lock.json -nt $$d/package-lock.json ]; then continue; fi; \
		command -v npm >/dev/null || { echo "npm is needed for the e2e tests (apt-get install -y nodejs npm)"; exit 1; }; \
		echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); \
	done

.PHONY: python-deps
python-deps: ## Install python3 and boto3 (Debian python3-boto3) for the e2e tests' second-language DynamoDB client, and the AWS CLI (Debian awscli) for the secured endpoint's test, if missing.
	@if ! python3 -c 'import boto3' >/dev/null 2>&1; then \
		echo "installing python3-boto3 (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-boto3 >/dev/null; \
		python3 -c 'import boto3' || { echo "python3 on PATH ($$(command -v python3)) still cannot import boto3"; exit 1; }; \
	fi
	@if ! command -v aws >/dev/null; then \
		echo "installing awscli (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq awscli >/dev/null; \
		command -v aws >/dev/null || { echo "awscli installed but aws is not on PATH"; exit 1; }; \
	fi

.PHONY: test
test: e2e-deps python-deps bench-deps tools ## Run every module's tests with the race detector (e2e included).
	VELTRIX_HELM=$(BIN)/helm go test $(GOTEST_FLAGS) $(PKGS)

.PHONY: e2e
e2e: e2e-deps python-deps tools ## Run only the end-to-end tests of the real binaries (also part of make test).
	go test -race -count=1 -timeout 15m -run 'TestBin' ./e2e/

.PHONY: bench-deps
bench-deps: ## Install redis-server and redis-benchmark (Debian) for make bench and the bench tests, if missing.
	@if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; fi

BENCH_FLAGS ?= --duration 2s --rounds 3 --keys 50000 --import-items 100000
# The revision bench-compare measures the working tree against.
BENCH_COMPARE ?= main

.PHONY: bench
bench: bench-deps ## Veltrix vs etcd, Redis and raw Pebble side by side, 3 interleaved rounds: YCSB A-D, PUT, BatchGet, bulk import (~12 min on 2 cores).
	go run ./cmd/veltrix bench $(BENCH_FLAGS)

.PHONY: bench-compare
bench-compare: bench-deps ## The working tree's bench against $(BENCH_COMPARE)'s, interleaved round by round, with the ratios (narrow it: BENCH_FLAGS='--peers veltrix-rf1 --workloads C,PUT ...').
	go run ./cmd/veltrix bench --compare $(BENCH_COMPARE) $(BENCH_FLAGS)

# Extra flags for veltrix dev, e.g. make run ARGS='--data-dir /tmp/v2 --listen-addr 127.0.0.1:7401'.
ARGS ?=

.PHONY: run
run: ## Start a local stack (veltrix dev): etcd, 3 storage nodes, router :7400 (DynamoDB API :8000), migrator :7600, sample import. Flags: ARGS='...' (veltrix dev -h).
	@cd tools && GOWORK=off go build -o $(BIN)/ github.com/fullstorydev/grpcurl/cmd/grpcurl
	go build -o $(BIN)/veltrix ./cmd/veltrix
	$(BIN)/veltrix dev $(ARGS)

# Each fuzz target runs this long in make fuzz.
FUZZTIME ?= 15s

.PHONY: fuzz
fuzz: ## Run every fuzz target (func Fuzz* in a _test.go) for FUZZTIME each (default 15s). Not part of ci: go test runs the committed seeds.
	@grep -rHo --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*' . | sort | \
	while IFS=: read -r file fn; do \
		fn=$${fn#func }; pkg=./$$(dirname "$${file#./}"); \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null || exit 1; \
	done

.PHONY: ci
ci: check-generated lint test ## What CI runs: check-generated, lint, test.
