//go:build !goolm

package assistant

import (
	"context"
	"errors"
)

// ErrNoGoolm is what Run answers in a binary built without -tags goolm:
// the assistant's end-to-end encryption needs an Olm implementation, and
// Matrix OS uses goolm (make build sets the tag).
var ErrNoGoolm = errors.New("this matrixos was built without -tags goolm, which the assistant needs (build it with make build)")

// Run refuses to run the assistant: see ErrNoGoolm.
func (a *Assistant) Run(ctx context.Context, login Login) error { return ErrNoGoolm }
