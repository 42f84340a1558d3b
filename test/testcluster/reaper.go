package testcluster

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// reaperEnv, set in the environment of a process that imports this package,
// makes it the reaper of a Node (see startReaper) instead of what it is.
const reaperEnv = "LEADER_ELECTOR_TESTCLUSTER_REAP"

// A Node's containers and containerd's shims are not children of the test
// process: they outlive it when it is killed, by SIGKILL or a test timeout.
// So StartNode starts a reaper, this very binary again in a session of its
// own: it waits for the end of a pipe that only the test process holds, and
// when that ends, however the test process ended, tears the node down. This
// init is how the binary knows it is the reaper; it runs before any test or
// main, and does nothing in any other process.
func init() {
	spec := os.Getenv(reaperEnv)
	if spec == "" {
		return
	}
	dir, rest, _ := strings.Cut(spec, "\n")
	cgroup, bridge, _ := strings.Cut(rest, "\n")
	pipe := os.NewFile(3, "reaper-pipe")
	_, _ = io.Copy(io.Discard, pipe) // until the test process's end is closed
	if _, err := os.Stat(dir); err == nil {
		if err := teardownNode(dir, cgroup, bridge); err != nil {
			fmt.Fprintln(os.Stderr, "testcluster reaper:", err)
			os.Exit(1)
		}
	}
	_ = os.Remove(dir + ".reaper.log")
	os.Exit(0)
}

// startReaper starts the reaper of the node in dir. The returned file is the
// pipe's write end: the node keeps it open while it runs; Stop closes it
// after its own teardown, and the reaper then finds nothing left to do.
func startReaper(dir, cgroup, bridge, logPath string) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start the node's reaper: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start the node's reaper: %w", err)
	}
	defer r.Close()
	log, err := os.Create(logPath)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start the node's reaper: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), reaperEnv+"="+dir+"\n"+cgroup+"\n"+bridge)
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session, and no parent-death signal: it must outlive us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the node's reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return w, nil
}
