# protogate: the single entry point for building, running and checking.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
GO ?= go

# Pinned generator versions (protoc itself comes from Debian's protobuf-compiler, 3.21.12).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

TEST_TIMEOUT ?= 20m
FUZZTIME ?= 10s
RUN_CONFIG ?=

.PHONY: help
help: ## Describe the targets
	@grep -hE '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the binaries into .bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: run
run: build ## Run the gateway on its embedded defaults (builtin:linepubsub on :7993)
	$(BIN)/protogate run $(if $(RUN_CONFIG),-c $(RUN_CONFIG))

.PHONY: run-grpc
run-grpc: build ## Run the gateway with the reference remote gRPC handler (JSON protocol)
	@scripts/run-quickstart.sh $(BIN) cmd/exproto-json-handler/protogate.yaml

.PHONY: deps
deps: ## Install the test peers (apt) when missing
	@scripts/deps.sh

.PHONY: test
test: deps sdk-guests ## Run every test with the race detector
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# The guests of the other languages' SDKs (sdk/c, sdk/rust,
# sdk/assemblyscript): echo-LANG.wasm and linepubsub-LANG.wasm under
# .bin/guests/, checked by cmd/protogate's TestGuestLanguages. Each SDK adds
# its target as a prerequisite of sdk-guests.
SDK_GUESTS := $(BIN)/guests

.PHONY: sdk-guests
sdk-guests: ## Build the C, Rust and AssemblyScript SDKs' echo and linepubsub guests into .bin/guests/
	@mkdir -p $(SDK_GUESTS)

sdk-guests: sdk-guests-c

# The C SDK's guests (sdk/c, guests/c), WASI reactors built with Debian's
# clang, lld and wasi-libc (scripts/deps.sh). --strip-all drops the names and
# debug sections, so the bytes depend only on the sources and the clang and
# wasi-libc versions (no paths); make rebuilds only what changed.
C_GUESTS := echo linepubsub faulty
C_SDK := sdk/c/protogate.c sdk/c/protogate.h sdk/c/protogate_abi.h
CLANG_WASM := clang --target=wasm32-wasi -mexec-model=reactor -O2 -std=c11 -Wall -Wextra -Werror -Isdk/c -Wl,--strip-all

$(SDK_GUESTS)/%-c.wasm: guests/c/%.c $(C_SDK)
	@mkdir -p $(@D)
	$(CLANG_WASM) -o $@ $< sdk/c/protogate.c

.PHONY: sdk-guests-c
sdk-guests-c: $(C_GUESTS:%=$(SDK_GUESTS)/%-c.wasm) ## Build the C SDK's guests into .bin/guests/ (echo-c, linepubsub-c, faulty-c)

.PHONY: sdk-c-test
sdk-c-test: ## Run the C SDK's native tests (sdk/c/test, guests/c) with cc and the fake host
	$(GO) test -count=1 -v ./sdk/c/ctest/

sdk-guests: sdk-guests-as

# AssemblyScript (sdk/assemblyscript): build.sh runs npm ci for the pinned
# compiler when node_modules is missing. faulty-as.wasm is wasmhost's fault
# guest in AssemblyScript.
AS_SDK := sdk/assemblyscript
AS_SDK_SRC := $(AS_SDK)/build.sh $(AS_SDK)/package-lock.json $(wildcard $(AS_SDK)/assembly/*.ts)

.PHONY: sdk-guests-as
sdk-guests-as: $(SDK_GUESTS)/echo-as.wasm $(SDK_GUESTS)/linepubsub-as.wasm $(SDK_GUESTS)/faulty-as.wasm ## Build the AssemblyScript guests into .bin/guests/

$(SDK_GUESTS)/%-as.wasm: guests/assemblyscript/%.ts $(AS_SDK_SRC) | $(AS_SDK)/node_modules/.bin/asc
	$(AS_SDK)/build.sh $< $@

# Once, before the builds (make -j would have each build.sh run npm ci).
$(AS_SDK)/node_modules/.bin/asc:
	cd $(AS_SDK) && npm ci --no-audit --no-fund --loglevel=error

sdk-guests: sdk-guests-rust

# The Rust SDK (sdk/rust) and its guests (guests/rust) build with Debian's
# toolchain only (rustc 1.63 with libstd-rust-dev-wasm32): a newer rustc on
# PATH (~/.cargo/bin) has no wasm32-wasi std offline. No crate has a
# dependency, so cargo never needs the network. The target directory is
# .bin/cargo, shared by the SDK's tests and the guests. The checkout's
# path, which the panic locations of sdk/rust would carry, is remapped out of
# the modules. (They are the same bytes for the same checkout path only:
# cargo hashes a path dependency's location into symbol names, which orders
# the functions. Nothing commits these modules, so that is enough.)
RUST_ENV := PATH=/usr/bin:$$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=$(BIN)/cargo
RUST_GUEST_FLAGS := RUSTFLAGS='--remap-path-prefix=$(CURDIR)=protogate'
RUST_GUESTS := echo linepubsub faulty

.PHONY: sdk-guests-rust
sdk-guests-rust: ## Build the Rust guests (guests/rust) into .bin/guests/*-rust.wasm
	@mkdir -p $(SDK_GUESTS)
	$(RUST_ENV) $(RUST_GUEST_FLAGS) /usr/bin/cargo build --offline --quiet --release --target wasm32-wasi --manifest-path guests/rust/Cargo.toml
	@for g in $(RUST_GUESTS); do cp $(BIN)/cargo/wasm32-wasi/release/$${g}_rust.wasm $(SDK_GUESTS)/$$g-rust.wasm; done

.PHONY: test-rust
test-rust: ## Run the Rust SDK's and guests' native tests (cargo test)
	$(RUST_ENV) /usr/bin/cargo test --offline --quiet --manifest-path sdk/rust/Cargo.toml
	$(RUST_ENV) /usr/bin/cargo test --offline --quiet --manifest-path guests/rust/Cargo.toml

# The suite takes about 4.5 minutes on a 2-core machine (the langs group
# loads the sdk guests' echo modules, hence sdk-guests); BENCH_FLAGS=-quick
# checks it in about a minute (its numbers mean nothing).
BENCH_OUT ?= bench/results
BENCH_FLAGS ?=
GOBENCH_PKGS := ./gateway/... ./wasmhost/ ./abi/ ./sdk/go/

.PHONY: bench
bench: build sdk-guests ## Run the benchmark suite (table on stdout and in bench/results/), then the Go benchmarks of the hot paths
	@# A missed target (or a failed case) makes protogate-bench exit 1 after
	@# its whole table; the Go benchmarks still run, and make exits with the
	@# first non-zero status (BENCH_FLAGS=-keep-going: 0 for missed targets).
	@status=0; \
	echo "$(BIN)/protogate-bench -bin $(BIN) -out $(BENCH_OUT) $(BENCH_FLAGS)"; \
	$(BIN)/protogate-bench -bin $(BIN) -out $(BENCH_OUT) $(BENCH_FLAGS) || status=$$?; \
	$(MAKE) bench-go | tee $(BENCH_OUT)/gobench.txt || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	$(MAKE) bench-observe | tee $(BENCH_OUT)/observe.txt || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	exit $$status

.PHONY: bench-go
bench-go: ## Run the Go benchmarks of the hot paths with -benchmem
	$(GO) test -run '^$$' -bench . -skip 'IdleConns|Claim' -benchmem -benchtime 20000x $(GOBENCH_PKGS)
	@# One measurement of 15,000 connections each; more would exhaust the ports.
	$(GO) test -run '^$$' -bench IdleConns -benchtime 1x ./wasmhost/
	@# Client-id claims on 3 clustered nodes (p50/p99 of one claim, and a storm).
	$(GO) test -run '^$$' -bench Claim -benchtime 5000x ./gateway/registry/

# One interleaved run of 2 s phases (40 s): a ratio, not a b.N loop.
.PHONY: bench-observe
bench-observe: ## Wasm echo throughput while /metrics is scraped every second and a client is traced, over the same echo without
	$(GO) test -run '^$$' -bench EchoObserved -benchtime 1x ./admin/

# The Wasm guests are built reproducibly: the same bytes on every machine
# with the same Go version (no paths, VCS stamps or build ids in the module,
# and none of the caller's GOFLAGS, GOWASM or GOEXPERIMENT).
GUESTS := echo linepubsub exproto-json coap
GUEST_ENV := GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= GOWASM= GOEXPERIMENT=
GUEST_BUILD := $(GUEST_ENV) $(GO) build -buildmode=c-shared -trimpath -buildvcs=false -ldflags='-s -w -buildid='

.PHONY: guests
guests: ## Rebuild the Wasm guests into guests/builtin/ and the host's fault fixtures
	@for g in $(GUESTS); do \
		echo "$(GUEST_BUILD) -o guests/builtin/$$g.wasm ./guests/$$g"; \
		$(GUEST_BUILD) -o guests/builtin/$$g.wasm ./guests/$$g; \
	done
	$(GUEST_BUILD) -o wasmhost/testdata/faulty.wasm ./wasmhost/testdata/faulty

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: proto
proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Regenerate proto/exprotov1 and proto/protogatev1 from proto/*.proto
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
	protoc -I proto \
		--go_out=. --go_opt=module=github.com/protogate/protogate \
		--go-grpc_out=. --go-grpc_opt=module=github.com/protogate/protogate \
		proto/exproto.proto proto/protogate.proto

# staticcheck is pinned like the generators, and run with go run: nothing
# to install by hand.
STATICCHECK_VERSION := v0.8.2

.PHONY: lint
lint: ## Run go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: check
check: deps proto guests lint ## Fail if generated code, guests, gofmt, go.mod or lint differ from what is committed
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) mod tidy
	git diff --exit-code -- . ':(exclude).bin'
	@test -z "$$(git status --porcelain --untracked-files=all -- proto guests wasmhost/testdata)" || { git status --porcelain -- proto guests wasmhost/testdata; exit 1; }

# make test runs every fuzz target's seed corpus; this fuzzes each one on
# top, one after the other (about 30 targets: 7-17 minutes at 10s). It stops
# at the first failure and prints the input; see RATIONALE.md.
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each, stopping at the first failure
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN) data
