package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// sidecarUID runs the sidecars, as distroless' nonroot user runs the image:
// the tests run as root, whom file modes do not stop, and a read-only status
// directory must really refuse the sidecar's writes.
const sidecarUID = 65532

// replica is one pod of a workload: its sidecar process (restarted as the
// kubelet would after it ends), its emptyDir and its proxy to the API server.
type replica struct {
	w   *workload
	pod string // the name the harness knows it by: its directories, the recorders
	// identity is the pod whose sidecar this is (POD_NAME, IDENTITY): pod,
	// or, for a twin, the pod it shares an identity and pod UID with.
	identity   string
	uid        string   // POD_UID
	args       []string // the sidecar's arguments, such as "--" and a command for the gatekeeper
	ip         string
	dir        string // the pod's directory: kubeconfig and logs
	emptyDir   string // owned by sidecarUID; holds the status file
	statusFile string
	kubeconfig string
	proxy      *testcluster.Proxy

	mu   sync.Mutex
	proc *proc
	runs int
}

// proc is one run of a sidecar.
type proc struct {
	*testcluster.Process
	r         *replica
	run       int
	logPath   string
	healthURL string
	started   time.Time

	mu       sync.Mutex
	expected string // why the test ended it; empty: it ended by itself
}

func (p *proc) pid() int { return p.Pid() }

func (p *proc) exited() bool { return p.Exited() }

// expect notes that the test is about to end the process, and why.
func (p *proc) expect(why string) {
	p.mu.Lock()
	p.expected = why
	p.mu.Unlock()
}

func (p *proc) exit() (err error, at time.Time, expected string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ExitErr(), p.ExitedAt(), p.expected
}

// signal sends sig, which must find the process running.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("signal %s to %s: it has exited", sig, p.r.pod)
	}
	return p.Signal(sig)
}

func (p *proc) log() string {
	if p.Process != nil {
		return p.Log()
	}
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newReplica prepares a pod's directories as the kubelet would: an emptyDir
// the sidecar's user owns.
func newReplica(w *workload, pod, ip, dir string) (*replica, error) {
	r := &replica{w: w, pod: pod, identity: pod, ip: ip, dir: dir, emptyDir: filepath.Join(dir, "emptydir")}
	r.statusFile = filepath.Join(r.emptyDir, "leader_status")
	if err := os.MkdirAll(r.emptyDir, 0o755); err != nil {
		return nil, fmt.Errorf("make emptyDir of %s: %w", pod, err)
	}
	for _, d := range []string{dir, r.emptyDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("open %s to the sidecar: %w", d, err)
		}
	}
	if err := os.Chown(r.emptyDir, sidecarUID, sidecarUID); err != nil {
		return nil, fmt.Errorf("give the emptyDir of %s to uid %d: %w", pod, sidecarUID, err)
	}
	return r, nil
}

// current is the sidecar's latest run.
func (r *replica) current() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// start runs the sidecar (again), as uid sidecarUID, killed if the test
// process dies. onExit is called once the process has ended.
func (r *replica) start(env []string, onExit func(*proc)) (*proc, error) {
	if p := r.current(); p != nil && !p.exited() {
		return nil, fmt.Errorf("start %s: run %d still runs", r.pod, p.run)
	}
	port, err := testcluster.FreePort()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.runs++
	run := r.runs
	r.mu.Unlock()
	p := &proc{r: r, run: run, healthURL: "http://127.0.0.1:" + strconv.Itoa(port),
		logPath: filepath.Join(r.dir, fmt.Sprintf("sidecar-%d.log", run))}
	env = append([]string{
		"LEASE_NAME=" + r.w.lease,
		"NAMESPACE=" + r.w.ns,
		"POD_NAME=" + r.identity,
		"POD_UID=" + r.uid,
		"POD_IP=" + r.ip,
		"IDENTITY=" + r.identity, // a pod's hostname is its name
		"KUBECONFIG=" + r.kubeconfig,
		"STATUS_FILE=" + r.statusFile,
		"HEALTH_PORT=" + strconv.Itoa(port),
		"HOME=/nonexistent",
	}, env...)
	for i, e := range env {
		env[i] = strings.ReplaceAll(e, "{instance}", r.w.name)
	}
	tp, err := testcluster.StartProcessWith(r.pod, binary, testcluster.ProcessSpec{Args: r.args, Env: env, UID: sidecarUID}, p.logPath)
	if err != nil {
		return nil, err
	}
	p.Process, p.started = tp, time.Now()
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	if onExit != nil {
		go func() {
			<-p.Done()
			onExit(p)
		}()
	}
	return p, nil
}

// stop ends the current run with sig, waits up to grace, then kills it.
func (r *replica) stop(sig syscall.Signal, why string, grace time.Duration) error {
	p := r.current()
	if p == nil || p.exited() {
		return nil
	}
	p.expect(why)
	return p.Stop(sig, grace)
}

// hasStatusFile reports whether the status file exists.
func (r *replica) hasStatusFile() bool {
	_, err := os.Stat(r.statusFile)
	return err == nil
}

// status reads /status of the current run.
func (p *proc) status() (map[string]any, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.healthURL + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode /status of %s: %w", p.r.pod, err)
	}
	return m, nil
}

// probe returns the status code of GET path on the health port.
func (p *proc) probe(path string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.healthURL + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// usage is what a process holds: open file descriptors, and goroutines
// (from /status) or, where /status has none, threads (from /proc).
type usage struct {
	fds        int
	goroutines int
	threads    int
	// fromStatus tells whether goroutines came from /status.
	fromStatus bool
	// leader: a leader runs more goroutines than a follower.
	leader bool
}

func (p *proc) usage() (usage, error) {
	var u usage
	pid := p.pid()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, fmt.Errorf("open fds of %s: %w", p.r.pod, err)
	}
	u.fds = len(fds)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("threads of %s: %w", p.r.pod, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			u.threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if st, err := p.status(); err == nil {
		if g, ok := st["goroutines"].(float64); ok {
			u.goroutines, u.fromStatus = int(g), true
		}
		u.leader, _ = st["is_leader"].(bool)
	}
	return u, nil
}

// canWriteAs reports whether uid can create a file in dir, by trying it in a
// child process with that uid: the test itself runs as root.
func canWriteAs(uid int, dir string) (bool, error) {
	probe := filepath.Join(dir, ".chaos-write-probe")
	cmd := exec.Command("/bin/sh", "-c", `: > "$1" && rm -f "$1"`, "sh", probe)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}},
	}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		return false, nil
	default:
		return false, fmt.Errorf("probe writes to %s as uid %d: %w", dir, uid, err)
	}
}
