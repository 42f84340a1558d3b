//go:build !linux

package gatekeeper

import "syscall"

// procAttr is empty where there is no parent-death signal: a command may
// outlive a sidecar that was killed.
func procAttr() *syscall.SysProcAttr { return nil }
