package gatekeeper

import "syscall"

// procAttr has the kernel kill the command when the sidecar dies without
// stopping it (SIGKILL, OOM kill), so that it never outlives the Lease.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
