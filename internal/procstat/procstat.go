// Package procstat reads a Linux process's resident memory and CPU time
// from /proc, for the benchmarks and the tests that watch a sidecar's
// footprint.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Self stands for the calling process in RSS and CPUTime.
const Self = 0

// RSS is the resident set size (VmRSS) of process pid, in bytes.
func RSS(pid int) (int64, error) {
	path := statusPath(pid, "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read the resident memory of %s: %w", procName(pid), err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmRSS %q: %w", path, bytes.TrimSpace(v), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s has no VmRSS line (a zombie, or a kernel thread)", path)
}

// CPUTime is the user and system CPU time process pid has used.
func CPUTime(pid int) (time.Duration, error) {
	path := statusPath(pid, "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of %s: %w", procName(pid), err)
	}
	// The fields after the command name, which may hold spaces and ')':
	// utime is the 14th and stime the 15th of the whole line.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0, fmt.Errorf("%s: no command name in %q", path, b)
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: %d fields after the command name, want at least 13", path, len(f))
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: utime %q, stime %q: want whole numbers", path, f[11], f[12])
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

func statusPath(pid int, file string) string {
	if pid == Self {
		return "/proc/self/" + file
	}
	return fmt.Sprintf("/proc/%d/%s", pid, file)
}

func procName(pid int) string {
	if pid == Self {
		return "this process"
	}
	return "pid " + strconv.Itoa(pid)
}
