package testnode

import "syscall"

// dendriteProcAttr makes the kernel kill Dendrite when the test process
// dies, so that a test binary killed by its timeout leaves none behind.
func dendriteProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
