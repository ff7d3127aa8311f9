//go:build !linux

package testnode

import "syscall"

// dendriteProcAttr: only Linux can tie the child's life to the test
// process; elsewhere the test's cleanup stops it.
func dendriteProcAttr() *syscall.SysProcAttr { return nil }
