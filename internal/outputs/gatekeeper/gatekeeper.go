// Package gatekeeper runs a command only while this replica leads, as
// k8s-await-election does: the command starts once the Lease is won, is
// stopped when leadership ends, and when it exits on its own the sidecar
// gives the Lease back and exits with the command's status.
//
// The command runs at most once per process. Once it ran, the sidecar exits
// and the kubelet restarts the container as a candidate, as with the
// original; a second term in one process would need the command's state to
// be reset, which only a new container does.
//
// Its methods plug into the sidecar's Output: Lead starts the command,
// Follow stops it, Run waits for it and reports how it ended, and Forward
// passes the sidecar's SIGTERM or SIGINT on to it.
package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
)

// Config configures a Gatekeeper. New validates it.
type Config struct {
	// Command is the program and its arguments. Required. A name without a
	// slash is looked up in PATH.
	Command []string
	// StopGrace is how long the command may take to exit after SIGTERM
	// before it is killed. Required. When leadership was lost, Follow's
	// context may end it earlier.
	StopGrace time.Duration
	// Stdin, Stdout and Stderr are the command's; nil: the null device. The
	// sidecar passes its own, so the command inherits them.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Env is the command's environment; nil: this process's.
	Env []string
	// Clock times StopGrace; clock.RealClock{} when nil.
	Clock clock.Clock
	// Log receives one line per event of the command; slog.Default() when nil.
	Log *slog.Logger
}

// ExitError is how the command ended, when it ended other than by losing
// leadership: main exits with Code.
type ExitError struct {
	// Code is the command's exit status; 128 plus the signal's number when a
	// signal ended it, as a shell reports it; 127 when it was not found and
	// 126 when it could not be started otherwise, as a shell does.
	Code int
	// Err says what happened.
	Err error
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%v (exit code %d)", e.Err, e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// pipeDrain bounds how long Run waits, once the command exited, for the
// output it wrote to a Stdout or Stderr that is not a file.
const pipeDrain = time.Second

// ErrLeadershipLost is Run's result once Follow stopped the command: the
// sidecar exits non-zero, and the kubelet restarts it as a candidate.
var ErrLeadershipLost = errors.New("leadership was lost, so the command was stopped")

// Gatekeeper runs one command while this replica leads. Create it with New.
type Gatekeeper struct {
	cfg       Config
	log       *slog.Logger
	clk       clock.Clock
	ended     chan struct{} // closed once the command exited or failed to start
	forwarded chan struct{} // a signal was forwarded: Run times StopGrace

	mu       sync.Mutex
	started  bool        // Lead tried to start the command
	closed   bool        // Run saw its context end: Lead starts nothing
	proc     *os.Process // the running command, nil before it started
	lost     bool        // Follow stops the command
	signaled bool        // Forward passed a signal on
	result   error       // Run's result, set before ended is closed
}

// New validates cfg and returns a Gatekeeper. It starts nothing.
func New(cfg Config) (*Gatekeeper, error) {
	switch {
	case len(cfg.Command) == 0 || cfg.Command[0] == "":
		return nil, errors.New("gatekeeper: Command is required")
	case cfg.StopGrace <= 0:
		return nil, fmt.Errorf("gatekeeper: StopGrace must be positive, not %s", cfg.StopGrace)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Gatekeeper{cfg: cfg, log: log.With("command", cfg.Command[0]), clk: cfg.Clock,
		ended: make(chan struct{}), forwarded: make(chan struct{}, 1)}, nil
}

// Lead starts the command, the first time leadership is won, and returns at
// once. The command is not bound to ctx: it runs until Follow or Run stops
// it. An error, such as a command not found, gives the Lease back, and Run
// then returns it as an ExitError (127 or 126), so the sidecar exits as the
// original does. Leading a second time is an error: the command ran once.
func (g *Gatekeeper) Lead(_ context.Context, _ election.State) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return errors.New("not starting the command: the sidecar is stopping")
	case g.started:
		return errors.New("the command ran once already: the sidecar exits to be restarted as a candidate")
	}
	g.started = true
	proc, err := g.start()
	if err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = 127
		}
		err = fmt.Errorf("start the command %q: %w", g.cfg.Command, err)
		g.result = &ExitError{Code: code, Err: err}
		close(g.ended)
		return err
	}
	g.proc = proc
	g.log.Info("leading: started the command", "args", g.cfg.Command[1:], "pid", proc.Pid)
	return nil
}

// start starts the command in a goroutine of its own, which waits for it
// and then calls exited. That goroutine keeps its OS thread: the command's
// parent-death signal (see procAttr) is tied to the thread that started it,
// and a thread the Go runtime reused for a goroutine that exits locked would
// take the command with it.
func (g *Gatekeeper) start() (*os.Process, error) {
	if err := becomeSubreaper(); err != nil {
		g.log.Warn("cannot become the subreaper of the command's orphans: a child its parent left behind is init's to reap", "err", err)
	}
	cmd := exec.Command(g.cfg.Command[0], g.cfg.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.cfg.Stdin, g.cfg.Stdout, g.cfg.Stderr
	cmd.Env = g.cfg.Env
	// A writer that is not a file is fed through a pipe, which a child the
	// command left behind may hold open: do not wait for it forever.
	cmd.WaitDelay = pipeDrain
	cmd.SysProcAttr = procAttr()
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		g.exited(cmd.ProcessState, err)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return cmd.Process, nil
}

// exited records how the command ended, for Run.
func (g *Gatekeeper) exited(ps *os.ProcessState, waitErr error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	code := exitCode(ps)
	g.log.Info("the command exited", "pid", ps.Pid(), "status", ps.String(), "code", code)
	switch {
	case g.lost:
		g.result = ErrLeadershipLost
	case waitErr != nil && !errors.As(waitErr, new(*exec.ExitError)):
		// Its status is known, but copying its output failed.
		g.result = &ExitError{Code: code, Err: fmt.Errorf("the command exited: %s; %w", ps, waitErr)}
	default:
		g.result = &ExitError{Code: code, Err: fmt.Errorf("the command exited: %s", ps)}
	}
	close(g.ended)
}

// exitCode is ps's status as a shell reports it: 128+n for signal n.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Follow stops the command once leadership ended: SIGTERM, then SIGKILL
// after StopGrace or when ctx ends, whichever is first, and waits until it
// has exited. The sidecar's ctx ends after RETRY_PERIOD, before any other
// replica may take the Lease. Run then returns ErrLeadershipLost.
func (g *Gatekeeper) Follow(ctx context.Context, _ election.State) error {
	g.mu.Lock()
	running := g.running()
	if running {
		g.lost = true
	}
	g.mu.Unlock()
	if !running {
		return nil
	}
	return g.stop(ctx, "leadership ended")
}

// running reports whether the command runs; g.mu must be held.
func (g *Gatekeeper) running() bool {
	if g.proc == nil {
		return false
	}
	select {
	case <-g.ended:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits for the exit until StopGrace passed or ctx
// ended, then kills the command and waits for it.
func (g *Gatekeeper) stop(ctx context.Context, why string) error {
	g.log.Info("stopping the command with SIGTERM", "reason", why, "grace", g.cfg.StopGrace)
	if err := g.signal(syscall.SIGTERM); err != nil {
		return err
	}
	t := g.clk.NewTimer(g.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-g.ended:
	case <-t.C():
		g.kill(fmt.Sprintf("it did not exit within %s of SIGTERM", g.cfg.StopGrace))
	case <-ctx.Done():
		g.kill("it did not exit before leadership could pass to another replica")
	}
	<-g.ended
	g.endGroup(ctx, t.C())
	return nil
}

// endGroup ends what the command left in its process group (the children
// of a shell that did not exec, a forking server's workers): they had the
// SIGTERM with the command, and get SIGKILL when grace or ctx ends first.
// It returns once the group is empty, its exited processes reaped.
func (g *Gatekeeper) endGroup(ctx context.Context, grace <-chan time.Time) {
	pgid := g.proc.Pid
	killed := false
	for groupAlive(pgid) {
		if !killed {
			select {
			case <-grace:
				killed = true
			case <-ctx.Done():
				killed = true
			default:
			}
			if killed {
				g.kill("the command's process group outlived it")
			}
		}
		<-g.clk.After(10 * time.Millisecond)
	}
}

// signal sends sig to the command's process group, unless it is empty.
func (g *Gatekeeper) signal(sig syscall.Signal) error {
	if err := signalGroup(g.proc.Pid, sig); err != nil {
		return fmt.Errorf("send %s to the command's process group: %w", sig, err)
	}
	return nil
}

func (g *Gatekeeper) kill(why string) {
	g.log.Warn("killing the command and its process group", "reason", why)
	if err := g.signal(syscall.SIGKILL); err != nil {
		g.log.Error("cannot kill the command", "err", err) // only if this process may not signal its own child
	}
}

// Forward passes sig, the sidecar's SIGTERM or SIGINT, on to the command
// and reports true, if the command runs. The election then goes on while
// the command shuts down; when it exits, Run returns its status, and the
// sidecar releases the Lease and exits with it. If the command has not
// exited StopGrace after the first forwarded signal, Run kills it. Without a
// running command Forward reports false, and the sidecar stops as usual.
func (g *Gatekeeper) Forward(sig os.Signal) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.running() {
		return false
	}
	s, ok := sig.(syscall.Signal)
	if !ok {
		return false
	}
	g.log.Info("forwarding a signal to the command", "signal", sig)
	if err := g.signal(s); err != nil {
		g.log.Error("cannot forward the signal", "err", err)
		return false
	}
	if !g.signaled {
		g.signaled = true
		g.forwarded <- struct{}{}
	}
	return true
}

// Run waits until the command has ended and returns how: an *ExitError when
// it exited on its own, after a forwarded signal or when it could not
// start, ErrLeadershipLost when Follow stopped it. The sidecar ends the
// election when Run returns early. When ctx ends first, Run stops a running
// command as Follow does, with StopGrace, and returns how it ended; nil if
// it never started.
func (g *Gatekeeper) Run(ctx context.Context) error {
	var grace <-chan time.Time
	for {
		select {
		case <-g.ended:
			g.mu.Lock()
			lost, proc := g.lost, g.proc
			g.mu.Unlock()
			if !lost && proc != nil && groupAlive(proc.Pid) {
				// It exited on its own: what it left gets SIGTERM, and
				// SIGKILL after StopGrace, before the Lease goes.
				g.log.Info("the command exited, but its process group did not; stopping it with SIGTERM", "grace", g.cfg.StopGrace)
				if err := g.signal(syscall.SIGTERM); err != nil {
					g.log.Error("cannot stop the command's process group", "err", err)
				}
				t := g.clk.NewTimer(g.cfg.StopGrace)
				g.endGroup(context.Background(), t.C())
				t.Stop()
			}
			return g.result
		case <-g.forwarded:
			t := g.clk.NewTimer(g.cfg.StopGrace)
			defer t.Stop()
			grace = t.C()
		case <-grace:
			grace = nil
			g.kill(fmt.Sprintf("it did not exit within %s of the forwarded signal", g.cfg.StopGrace))
		case <-ctx.Done():
			g.mu.Lock()
			g.closed = true
			running, started := g.running(), g.started
			g.mu.Unlock()
			if running {
				if err := g.stop(context.Background(), "the sidecar is stopping"); err != nil {
					return err
				}
			}
			if !started {
				return nil
			}
			<-g.ended
			return g.result
		}
	}
}
