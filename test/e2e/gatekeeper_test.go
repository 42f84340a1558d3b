package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// gatedCommand is the command each sidecar runs while it leads, as
// "leader-elector -- /bin/sh -c gatedCommand". It inherits the sidecar's
// environment (POD_NAME, and MARKS for this test) and logs its start and
// end in $MARKS/$POD_NAME, with $MARKS/$POD_NAME.running while it runs. On
// SIGTERM it exits 3. It waits in short background sleeps, which dash's
// traps interrupt reliably, and kills the last one on its way out.
const gatedCommand = `log="$MARKS/$POD_NAME"
trap 'kill $! 2>/dev/null; rm -f "$log.running"; echo "end $(date +%s%N)" >> "$log"; exit 3' TERM
echo "start $(date +%s%N)" >> "$log"
echo $$ > "$log.pid"
touch "$log.running"
while :; do sleep 0.05 & wait $!; done
`

// TestGatekeeper: three sidecars in our own mode with a command after --.
// The command runs on the leader only. SIGTERM to the leader's sidecar goes
// to its command, which exits 3; the sidecar then releases the Lease and
// exits 3, and the command starts on the new leader. Throughout, no two
// commands run at once. It prints how long from the SIGTERM until the new
// leader's command ran. Last, SIGKILL to the new leader's sidecar takes its
// command with it, and the third replica's command starts once the Lease
// expired.
func TestGatekeeper(t *testing.T) {
	f := newFleet(t)
	marks := t.TempDir()
	sampleLeaders(t, "running commands", func(ctx context.Context) ([]string, error) { return gatedRunning(marks), nil })
	endpoints := map[string]string{}
	for i := range 3 {
		pod := "replica-" + strconv.Itoa(i)
		port, err := testcluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		endpoints[pod] = "127.0.0.1:" + strconv.Itoa(port)
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		f.startArgs(pod, []string{"--", "/bin/sh", "-c", gatedCommand},
			"MARKS="+marks, "STATUS_ENDPOINT="+endpoints[pod], "COMMAND_STOP_GRACE=5s")
	}

	first := f.waitLeader(30*time.Second, false)
	if !eventually(10*time.Second, func() bool { return slices.Equal(gatedRunning(marks), []string{first}) }) {
		t.Fatalf("commands running: %v, want only the leader's, %s", gatedRunning(marks), first)
	}
	for pod, addr := range endpoints {
		var code int
		var body string
		var err error
		eventually(10*time.Second, func() bool { // a sidecar that started last may not listen yet
			code, body, err = gatedGet("http://" + addr + "/any/path")
			return err == nil
		})
		if code != 200 || body != `{"status": "ok"}` {
			t.Errorf("status endpoint of %s = %d %q (%v), want 200 {\"status\": \"ok\"}", pod, code, body, err)
		}
		if pod != first {
			if _, err := os.Stat(filepath.Join(marks, pod)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the command of follower %s ran (%v)", pod, err)
			}
		}
	}

	leader := f.byPod(first)
	sigterm := time.Now()
	if err := leader.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leader.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the leader's sidecar did not exit within 30s of SIGTERM:\n%s", leader.LogTail(30))
	}
	var exit *exec.ExitError
	if err := leader.ExitErr(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("the leader's sidecar ended with %v, want exit status 3, its command's", err)
	}
	if !strings.Contains(leader.Log(), `msg="released lease"`) {
		t.Errorf("the leader's sidecar did not release the Lease:\n%s", leader.LogTail(30))
	}
	firstEnd := gatedMarks(t, marks, first)["end"]
	if firstEnd.IsZero() {
		t.Errorf("the command of %s did not stop on SIGTERM", first)
	}

	var second string
	if !eventually(30*time.Second, func() bool {
		r := gatedRunning(marks)
		if len(r) == 1 && r[0] != first {
			second = r[0]
		}
		return second != ""
	}) {
		t.Fatalf("no command started on another replica within 30s; running: %v", gatedRunning(marks))
	}
	secondStart := gatedMarks(t, marks, second)["start"]
	if !secondStart.After(firstEnd) {
		t.Errorf("the command of %s started at %s, before that of %s ended at %s", second, secondStart, first, firstEnd)
	}
	if h := f.holder(t.Context()); h != second {
		t.Errorf("Lease holder = %q, want %s, whose command runs", h, second)
	}
	fmt.Printf("gatekeeper handover: SIGTERM to %s -> its command exited after %s -> the command of %s ran after %s\n",
		first, firstEnd.Sub(sigterm).Round(time.Millisecond), second, secondStart.Sub(sigterm).Round(time.Millisecond))

	// SIGKILL: no trap runs, but the kernel kills the command with its
	// sidecar (the parent-death signal), before the Lease can expire.
	b, err := os.ReadFile(filepath.Join(marks, second+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // leave no process behind, also when the test fails
		if !deadOrZombie(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return deadOrZombie(pid) }) {
		t.Fatalf("the command of %s (pid %d) outlived its SIGKILLed sidecar", second, pid)
	}
	// Its marker stays, as a dead pod's would: the command is gone, so it
	// no longer counts as running.
	if err := os.Remove(filepath.Join(marks, second+".running")); err != nil {
		t.Fatal(err)
	}
	third := ""
	if !eventually(leaseDuration+10*time.Second, func() bool {
		r := gatedRunning(marks)
		if len(r) == 1 {
			third = r[0]
		}
		return third != ""
	}) {
		t.Fatalf("no command started after the SIGKILL; running: %v", gatedRunning(marks))
	}
	if third == first || third == second {
		t.Errorf("the command of %s ran again after it had stopped", third)
	}
}

// deadOrZombie reports whether process pid has ended; an orphan that no one
// reaped yet is a zombie.
func deadOrZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// startArgs starts the sidecar of pod with args, as f.start does with none.
func (f *fleet) startArgs(pod string, args []string, env ...string) *testcluster.Sidecar {
	f.t.Helper()
	s, err := testcluster.StartSidecar(testcluster.SidecarOptions{
		Binary: binary, Namespace: f.ns, Pod: pod, Lease: leaseName, Kubeconfig: f.podKubeconfig(pod),
		Env: append(slices.Clone(timingEnv), env...), Args: args, Dir: filepath.Join(f.dir, pod),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.sidecars = append(f.sidecars, s)
	f.mu.Unlock()
	return s
}

// gatedRunning returns the pods whose command runs: each ".running" file is
// looked at twice, in two passes, as fleet.fileHolders does, so that two
// counted together existed at one instant.
func gatedRunning(marks string) []string {
	names, _ := filepath.Glob(filepath.Join(marks, "*.running"))
	var out []string
	for _, n := range names {
		if _, err := os.Stat(n); err == nil {
			out = append(out, strings.TrimSuffix(filepath.Base(n), ".running"))
		}
	}
	return out
}

// gatedMarks reads the times the command of pod logged, by event.
func gatedMarks(t *testing.T, marks, pod string) map[string]time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(marks, pod))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		event, ns, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			t.Fatalf("mark of %s: %q: %v", pod, line, err)
		}
		if _, seen := out[event]; seen {
			t.Errorf("the command of %s logged %q twice: it ran twice", pod, event)
		}
		out[event] = time.Unix(0, n)
	}
	return out
}

func gatedGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
