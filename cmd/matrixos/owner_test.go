//go:build unix

package main

import (
	"os"
	"strings"
	"testing"
)

// TestCheckOwner: the bridge CLI goes on as the data directory's owner
// and refuses, naming the owner to run as, any other user.
func TestCheckOwner(t *testing.T) {
	dir := t.TempDir()
	if err := checkOwner(dir, os.Geteuid()); err != nil {
		t.Errorf("as the owner: %v", err)
	}
	err := checkOwner(dir, os.Geteuid()+1)
	if err == nil || !strings.Contains(err.Error(), "sudo -u") {
		t.Errorf("as another user: %v, want a refusal naming the owner", err)
	}
}
