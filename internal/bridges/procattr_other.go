//go:build !linux

package bridges

import "syscall"

// childProcAttr puts an external program in a process group of its own.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
