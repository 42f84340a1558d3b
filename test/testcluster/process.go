package testcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Process is a child process whose output goes to a log file.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  string

	done     chan struct{}
	mu       sync.Mutex
	err      error
	exitedAt time.Time
}

// StartProcess starts path with args and env (added to this process's
// environment), writing its output to logPath. The child is killed when this
// process dies, however it dies.
func StartProcess(name, path string, args, env []string, logPath string) (*Process, error) {
	return StartProcessWith(name, path, ProcessSpec{Args: args, Env: env}, logPath)
}

// ProcessSpec says how to start a process.
type ProcessSpec struct {
	Args []string
	// Env is added to this process's environment, or with CleanEnv to PATH
	// alone.
	Env      []string
	CleanEnv bool
	// Hostname, when set, runs the process in a UTS namespace of its own
	// with this hostname, as a pod has (needs root).
	Hostname string
	// Tmp, when set, is mounted on /tmp in a mount namespace of the
	// process's own, as a pod's /tmp is its own (needs root).
	Tmp string
	// UID, when set, runs the process as this user and group, with no
	// supplementary groups, as a pod's securityContext does (needs root;
	// not with Hostname or Tmp, which need root in the child).
	UID uint32
}

// StartProcessWith starts path as spec says, writing its output to logPath.
// The child is killed when this process dies, however it dies.
func StartProcessWith(name, path string, spec ProcessSpec, logPath string) (*Process, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, spec.Args...)
	var flags uintptr
	if spec.Hostname != "" || spec.Tmp != "" {
		// sh sets up the new namespaces, then becomes path.
		// The binary may live under the /tmp it hides: it is opened first
		// and run from its descriptor.
		script := `set -e; [ -z "$0" ] || hostname "$0"; exec 3<"$2"; [ -z "$1" ] || { mount --make-rprivate /; mount --bind "$1" /tmp; }; shift 2; exec /proc/self/fd/3 "$@"`
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, spec.Hostname, spec.Tmp, path}, spec.Args...)...)
		if spec.Hostname != "" {
			flags |= syscall.CLONE_NEWUTS
		}
		if spec.Tmp != "" {
			flags |= syscall.CLONE_NEWNS
		}
	}
	cmd.Env = append(os.Environ(), spec.Env...)
	if spec.CleanEnv {
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, spec.Env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.SysProcAttr.Cloneflags = flags
	if spec.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: spec.UID, Gid: spec.UID, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		out.Close()
		p.mu.Lock()
		p.err, p.exitedAt = err, time.Now()
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit error, once it has ended.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ExitedAt is when the process was seen to end, once it has.
func (p *Process) ExitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends sig, waits up to grace for the exit, then kills.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	if err := p.Signal(sig); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	p.Kill()
	return fmt.Errorf("%s did not exit within %s of %s; killed", p.Name, grace, sig)
}

// Kill kills the process and waits until it has ended.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Log returns everything the process wrote.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// LogTail returns the last n lines the process wrote.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tempRoot holds every directory this package makes, one per process.
var tempRoot = filepath.Join(os.TempDir(), "leader-elector-testcluster")

// TempDir makes a directory under a root named after this process, and
// removes the directories of processes that no longer run: a killed test run
// cannot clean up after itself, so the next one does.
func TempDir(prefix string) (string, error) {
	if err := os.MkdirAll(tempRoot, 0o755); err != nil {
		return "", fmt.Errorf("make temp root: %w", err)
	}
	entries, _ := os.ReadDir(tempRoot)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.SplitN(e.Name(), "-", 2)[0])
		if err == nil && pid != os.Getpid() && !alive(pid) {
			reapStaleNode(filepath.Join(tempRoot, e.Name()))
			_ = os.RemoveAll(filepath.Join(tempRoot, e.Name()))
		}
	}
	dir, err := os.MkdirTemp(tempRoot, fmt.Sprintf("%d-%s-", os.Getpid(), prefix))
	if err != nil {
		return "", fmt.Errorf("make temp dir: %w", err)
	}
	return dir, nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// WriteKubeconfig writes a kubeconfig for server with a bearer token.
func WriteKubeconfig(path, server string, ca []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// insecureLoopbackTLS is for probing the controller manager's self-signed
// health port on loopback only.
func insecureLoopbackTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health probe of a test process
}
