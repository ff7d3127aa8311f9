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

.PHONY: all run build test vet fuzz-short

all: build

## run: build and run the homeserver (pass flags with ARGS="...")
run:
	$(GO) run -tags $(TAGS) ./cmd/matrixos $(ARGS)

## build: compile every package and the matrixos binary into $(BIN)
build:
	$(GO) build -tags $(TAGS) ./...
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/matrixos

## test: the full test suite (PostgreSQL tests skip when it is not installed,
## unless CI or MATRIXOS_REQUIRE_POSTGRES=1 is set)
test:
	$(GO) test -tags $(TAGS) -timeout $(TIMEOUT) ./...

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
