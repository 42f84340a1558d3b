//go:build !linux

package gatekeeper

import (
	"errors"
	"os"
	"syscall"
)

// procAttr is empty where there is no parent-death signal: a command may
// outlive a sidecar that was killed.
func procAttr() *syscall.SysProcAttr { return nil }

func becomeSubreaper() error { return nil }

// signalGroup signals the command alone: there is no group of its own.
func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func groupAlive(int) bool { return false }
