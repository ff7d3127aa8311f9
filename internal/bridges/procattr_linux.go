package bridges

import "syscall"

// childProcAttr puts an external program in a process group of its own
// and has the kernel kill it when the thread that started it ends, so
// that it does not outlive a node killed without the chance to stop it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
