//go:build unix

package main

import (
	"fmt"
	"os"
	osuser "os/user"
	"strconv"
	"syscall"
)

// requireOwner refuses to go on unless the effective user owns dataDir:
// files written as another user (root's, say) are files the node cannot
// read or that its user cannot be kept from.
func requireOwner(dataDir string) error { return checkOwner(dataDir, os.Geteuid()) }

func checkOwner(dataDir string, euid int) error {
	info, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == euid {
		return nil
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := osuser.LookupId(owner); err == nil {
		owner = u.Username
	}
	return fmt.Errorf("%s belongs to user %s: run this as that user (sudo -u %s matrixos ... --data %s)", dataDir, owner, owner, dataDir)
}
