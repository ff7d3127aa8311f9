//go:build !goexperiment.jsonv2

// Matrix OS uses encoding/json/v2, which Go only builds with
// GOEXPERIMENT=jsonv2. Without it, this file's import is the first error
// the go command reports, and its path says what to do:
//
//	make build                                            (bin/matrixos)
//	GOEXPERIMENT=jsonv2 go build -o bin/matrixos ./cmd/matrixos
//	GOEXPERIMENT=jsonv2 go run ./cmd/matrixos
//
// (An import path cannot hold spaces or '=', hence the underscores.)

package main

import _ "GOEXPERIMENT_jsonv2_is_needed_to_build_matrixos__see_README"
