package procstat

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc, which only Linux has")
	}
	rss, err := RSS(Self)
	if err != nil || rss < 1<<20 || rss > 1<<34 {
		t.Errorf("RSS(Self) = %d, %v; want between 1 MiB and 16 GiB", rss, err)
	}
	if byPid, err := RSS(os.Getpid()); err != nil || byPid < rss/2 || byPid > rss*2 {
		t.Errorf("RSS(own pid) = %d, %v; want about RSS(Self) = %d", byPid, err, rss)
	}
	before, err := CPUTime(Self)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPUTime(Self)
	if err != nil || after-before < 100*time.Millisecond {
		t.Errorf("CPUTime(Self) went from %s to %s (%v) over 300ms of spinning; want at least 100ms more", before, after, err)
	}
}

// A command name with spaces and a parenthesis does not shift the fields.
func TestCPUTimeOfAnOddlyNamedProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc, which only Linux has")
	}
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	odd := dir + "/a b) c"
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if d, err := CPUTime(cmd.Process.Pid); err != nil || d < 0 || d > time.Second {
		t.Errorf("CPUTime(%q) = %s, %v; want a short time", odd, d, err)
	}
}

func TestGoneProcess(t *testing.T) {
	const unlikely = 1 << 30 // above Linux's pid_max
	for name, read := range map[string]func(int) error{
		"RSS":     func(pid int) error { _, err := RSS(pid); return err },
		"CPUTime": func(pid int) error { _, err := CPUTime(pid); return err },
	} {
		if err := read(unlikely); err == nil || !strings.Contains(err.Error(), "pid 1073741824") {
			t.Errorf("%s of a pid that is not there: %v, want an error naming it", name, err)
		}
	}
}
