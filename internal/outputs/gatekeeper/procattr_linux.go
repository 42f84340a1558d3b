package gatekeeper

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// procAttr has the kernel kill the command when the sidecar dies without
// stopping it (SIGKILL, OOM kill), so that it never outlives the Lease, and
// starts it in a process group of its own, whose ID is its PID: the group
// holds what it forks, and every signal goes to the group.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// becomeSubreaper makes this process the parent of the command's orphans
// (children whose parent exited, such as those of an `sh -c` that did not
// exec), so that they stay in reach of reapGroup, not init's.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// signalGroup sends sig to every process of the command's group.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// groupAlive reaps the group's processes that are this process's children
// and have exited, and reports whether any process of the group is left.
func groupAlive(pgid int) bool {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			break
		}
	}
	return syscall.Kill(-pgid, 0) == nil
}
