package guard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestGoRecoversIntoTheRunsFailure: a panic in a guarded goroutine closes
// Failed, and Err names the panic and where it happened; later panics keep
// the first.
func TestGoRecoversIntoTheRunsFailure(t *testing.T) {
	g := FromContext(NewContext(context.Background(), New()))
	if g == nil {
		t.Fatal("FromContext lost the guard")
	}
	if g.Err() != nil {
		t.Fatalf("Err before a panic = %v", g.Err())
	}
	g.Go(func() { panic("first") })
	select {
	case <-g.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the panic did not fail the run")
	}
	g.Go(func() { panic("second") })
	var pe *PanicError
	if !errors.As(g.Err(), &pe) || pe.Value != "first" {
		t.Fatalf("Err = %v, want the first panic", g.Err())
	}
	if !strings.Contains(g.Err().Error(), "guard_test.go") {
		t.Errorf("the error has no stack naming the panic's place: %v", g.Err())
	}
}

// TestNilGuardLetsThePanicGoOn: without a guard in the context, Recover
// does not swallow the panic.
func TestNilGuardLetsThePanicGoOn(t *testing.T) {
	g := FromContext(context.Background())
	defer func() {
		if recover() != "unguarded" {
			t.Error("the panic was swallowed")
		}
	}()
	func() {
		defer g.Recover()
		panic("unguarded")
	}()
}
