# Matrix OS — developer and CI entry points. See README.md.

# encoding/json/v2 is used throughout; every go command needs it.
export GOEXPERIMENT := jsonv2
# Go installed from the official tarball is not always on PATH.
export PATH := $(PATH):/usr/local/go/bin

GO       ?= go
TAGS     ?= goolm
TIMEOUT  ?= 30m
FUZZTIME ?= 10s
BIN      ?= bin/matrixos

.PHONY: all run build test js-deps vet fuzz-short perf-figures bench-dendrite

all: build

## run: build and run the homeserver (pass flags with ARGS="...")
run:
	$(GO) run -tags $(TAGS) ./cmd/matrixos $(ARGS)

## build: compile every package and the matrixos binary into $(BIN)
build:
	$(GO) build -tags $(TAGS) ./...
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/matrixos

## test: the full test suite (PostgreSQL tests skip when it is not installed,
## unless CI or MATRIXOS_REQUIRE_POSTGRES=1 is set; the matrix-js-sdk tests
## skip without Node.js, unless CI or MATRIXOS_REQUIRE_JS=1 is set; the
## Dendrite interop tests skip without $MATRIXOS_DENDRITE or dendrite on PATH,
## unless MATRIXOS_REQUIRE_DENDRITE=1 is set)
test: js-deps
	$(GO) test -tags $(TAGS) -timeout $(TIMEOUT) ./...
	@if reason=$$($(JS_MISSING)); then echo "NOTE: the matrix-js-sdk tests in tests/js were SKIPPED: $$reason"; fi
	@if [ -z "$$MATRIXOS_DENDRITE" ] && ! command -v dendrite >/dev/null 2>&1; then \
	  echo "NOTE: the Dendrite interop tests in internal/federation/interop were SKIPPED: dendrite not found (set MATRIXOS_DENDRITE, see README.md)"; fi

# JS_MISSING prints why the tests/js scenarios cannot run, and fails when
# they can.
JS_MISSING = sh -c 'if ! command -v node >/dev/null 2>&1; then echo "node not found (install Node.js and npm)"; \
	elif [ ! -f tests/js/node_modules/matrix-js-sdk/package.json ]; then echo "tests/js/node_modules is missing (run: cd tests/js && npm ci)"; \
	else exit 1; fi'

## js-deps: install the npm packages of tests/js (npm ci) when npm is there
## and they are missing; otherwise say why the JS tests will be skipped
js-deps:
	@if [ -f tests/js/node_modules/matrix-js-sdk/package.json ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
	  echo "+ (cd tests/js && npm ci)"; \
	  (cd tests/js && npm ci --no-audit --no-fund) || echo "WARNING: npm ci in tests/js failed; the matrix-js-sdk tests will be skipped" >&2; \
	else \
	  echo "WARNING: npm not found; the matrix-js-sdk tests in tests/js will be skipped (install Node.js and npm, or set MATRIXOS_REQUIRE_JS=1 to make that a failure)" >&2; \
	fi

## perf-figures: reproduce every figure of docs/performance.md's summary (and
## the side-by-side run against Dendrite when it is installed); ARGS="--quick"
## for a shorter check. Run it on a quiet machine.
perf-figures:
	scripts/perf-figures.sh $(ARGS)

## bench-dendrite: the load tool against Matrix OS and Dendrite 0.13.8 in one
## interleaved run, printing the ratios ($$MATRIXOS_DENDRITE or the binary
## .ci/run installs); binaries built under /tmp
DENDRITE ?= $(or $(MATRIXOS_DENDRITE),$(HOME)/.cache/matrixos/dendrite-v0.13.8/dendrite)
bench-dendrite:
	$(GO) build -tags $(TAGS) -o /tmp/matrixos-bench-bin/matrixos ./cmd/matrixos
	$(GO) build -o /tmp/matrixos-bench-bin/matrixos-bench ./cmd/matrixos-bench
	/tmp/matrixos-bench-bin/matrixos-bench --spawn /tmp/matrixos-bench-bin/matrixos --versus $(DENDRITE) \
	  --scenario send,wakeup --messages 50 --iterations 50 --runs 3 --settle-timeout 60s $(ARGS)

vet:
	$(GO) vet -tags $(TAGS) ./...

## fuzz-short: run every Fuzz target for $(FUZZTIME) each
fuzz-short:
	@set -e; for pkg in $$($(GO) list -tags $(TAGS) -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
	  for fn in $$($(GO) test -tags $(TAGS) -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "+ go test -run '^$$' -fuzz '^$$fn$$' -fuzztime $(FUZZTIME) $$pkg"; \
	    $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done
