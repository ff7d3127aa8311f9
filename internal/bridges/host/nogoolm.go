//go:build !goolm

package host

import (
	"context"
	"errors"
)

// ErrNoGoolm is what Run answers in a binary built without -tags goolm:
// bridgev2's encryption needs an Olm implementation, and Matrix OS uses
// goolm (make build sets the tag).
var ErrNoGoolm = errors.New("this matrixos was built without -tags goolm, which bridges need (build it with make build)")

// Run refuses to run a bridge: see ErrNoGoolm.
func Run(ctx context.Context, opts Options) error { return ErrNoGoolm }
