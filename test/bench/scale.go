package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/leader-elector/leader-elector/internal/procstat"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// scaleResult is what one elector did at one replica count.
type scaleResult struct {
	n       int
	elector string
	window  time.Duration
	startup time.Duration // first start until the first leader

	handover []time.Duration // SIGTERM of the leader until the next status file
	crash    []time.Duration // next status file after SIGKILL, minus the Lease's expiry as observed
	restart  []time.Duration // SIGKILL and restart of the leader until any status file
	resign   []time.Duration // `resign` started until the next status file
	resignNA string          // why there is no resign figure, if there is none

	traffic      leaseTraffic // per minute over the window
	rssLeader    int64
	rssFollowers []int64
	cpuLeader    float64 // millicores over the window
	cpuFollowers []float64
	lost         int // replicas that ended on their own during the window

	err error // why the measurement ended early, if it did
}

// fleet is n replicas of one elector in a namespace of their own, talking to
// kube-apiserver directly with the ServiceAccount of deploy/.
type fleet struct {
	b      *bench
	kind   electorKind
	ns     string
	reps   []*testcluster.Sidecar
	status *statusWatch
	lease  *leaseWatch
	// firstLeader is the time from the first start until the first leader's
	// status file.
	firstLeader time.Duration
}

const (
	createParallel = 8                     // pods created at once
	startSpacing   = 20 * time.Millisecond // between sidecar starts
)

// startFleet creates the pods and starts their sidecars: pods in parallel,
// bounded; sidecars spaced by startSpacing, so that n Go runtimes do not
// initialise on two cores at the same instant.
func (b *bench) startFleet(ctx context.Context, k electorKind, n int) (_ *fleet, err error) {
	short := "le"
	if !k.resign {
		short = "cg"
	}
	ns, err := b.cp.CreateNamespace(ctx, fmt.Sprintf("%s-%d", short, n))
	if err != nil {
		return nil, err
	}
	f := &fleet{b: b, kind: k, ns: ns}
	defer func() {
		if err != nil {
			f.close(ctx)
		}
	}()
	if f.status, err = newStatusWatch(b.log); err != nil {
		return nil, err
	}
	if err := b.cp.ApplyManifests(ctx, ns, filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml")); err != nil {
		return nil, err
	}
	token, err := b.cp.ServiceAccountToken(ctx, ns, testcluster.ServiceAccount)
	if err != nil {
		return nil, err
	}
	nsDir := filepath.Join(b.dir, ns)
	if err := os.MkdirAll(nsDir, 0o755); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(nsDir, "kubeconfig")
	if err := testcluster.WriteKubeconfig(kubeconfig, b.cp.URL, b.cp.CAData, token); err != nil {
		return nil, err
	}
	uids := make([]string, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(createParallel)
	for i := range n {
		g.Go(func() error {
			pod, err := b.cp.CreatePod(gctx, ns, podName(i), testcluster.PodOptions{Labels: map[string]string{"app": app}})
			if err != nil {
				return err
			}
			uids[i] = string(pod.UID)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if f.lease, err = watchLease(ctx, b.cp.Admin, ns, lease); err != nil {
		return nil, err
	}
	start := time.Now()
	for i := range n {
		dir := filepath.Join(nsDir, podName(i))
		if err := f.status.add(i, dir); err != nil {
			return nil, err
		}
		s, err := b.startSidecar(testcluster.SidecarOptions{
			Binary: k.binary, Namespace: ns, Pod: podName(i), Lease: lease, Kubeconfig: kubeconfig, Dir: dir,
			// The same uid on every restart, as the Downward API gives it.
			Env: append(slices.Clone(k.env), "POD_UID="+uids[i], "CONTROL_SOCKET="+filepath.Join(dir, "leader-elector.sock")),
		})
		if err != nil {
			return nil, err
		}
		f.reps = append(f.reps, s)
		if err := sleep(ctx, startSpacing); err != nil {
			return nil, err
		}
	}
	go f.status.run(f.reps)
	started := time.Since(start)
	leader, err := f.status.leader(ctx, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	// Events of the first leader may have waited in inotify's queue until
	// the last start: its file's modification time says when.
	if fi, err := os.Stat(leader.StatusFile); err == nil {
		f.firstLeader = fi.ModTime().Sub(start)
	}
	b.log.Info("replicas started", "elector", k.name, "replicas", n, "startsTook", started.Round(time.Millisecond), "firstLeaderAfter", f.firstLeader.Round(time.Millisecond))
	return f, nil
}

func podName(i int) string { return fmt.Sprintf("replica-%d", i) }

// close ends every replica (SIGTERM, all at once; SIGKILL once ctx has
// ended), the watches and the namespace.
func (f *fleet) close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range f.reps {
		wg.Go(func() {
			if ctx.Err() != nil {
				_ = s.Kill()
				return
			}
			_ = s.Terminate()
		})
	}
	wg.Wait()
	if f.status != nil {
		f.status.close()
	}
	if f.lease != nil {
		f.lease.stop()
	}
	_ = f.b.cp.DeleteNamespace(context.WithoutCancel(ctx), f.ns)
}

// scale measures k at n replicas.
func (b *bench) scale(ctx context.Context, k electorKind, n int) (*scaleResult, error) {
	r := &scaleResult{n: n, elector: k.name, window: b.set.windowFor(n)}
	f, err := b.startFleet(ctx, k, n)
	if err != nil {
		return r, err
	}
	defer f.close(ctx)
	r.startup = f.firstLeader
	// Let the start-up traffic (n lists and watches) pass.
	if err := sleep(ctx, 5*time.Second+time.Duration(n)*20*time.Millisecond); err != nil {
		return r, err
	}
	if err := f.revive(ctx); err != nil {
		return r, err
	}
	if err := f.steady(ctx, r); err != nil {
		return r, fmt.Errorf("steady state: %w", err)
	}
	for i := range b.set.rounds {
		if err := f.graceful(ctx, r); err != nil {
			return r, fmt.Errorf("handover round %d: %w", i+1, err)
		}
	}
	for i := range b.set.crashRounds {
		if err := f.crash(ctx, r); err != nil {
			return r, fmt.Errorf("crash round %d: %w", i+1, err)
		}
	}
	for i := range b.set.crashRounds {
		if err := f.restart(ctx, r); err != nil {
			return r, fmt.Errorf("restart round %d: %w", i+1, err)
		}
	}
	if !k.resign {
		r.resignNA = "n/a"
		return r, nil
	}
	for i := range b.set.rounds {
		if err := f.resign(ctx, r); err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			b.log.Warn("resign", "round", i+1, "err", err)
			r.resignNA = fmt.Sprintf("n/a (error: %s)", err)
			r.resign = nil
			break
		}
	}
	return r, nil
}

// revive starts again, once, every replica that has ended on its own
// before the measurement (on a shared machine another process may take a
// health port between FreePort and the sidecar's listen), saying why.
func (f *fleet) revive(ctx context.Context) error {
	for _, s := range f.reps {
		if !s.Exited() {
			continue
		}
		f.b.log.Warn("replica ended before the measurement; starting it again", "pod", s.Opts.Pod, "err", s.ExitErr(), "log", s.LogTail(5))
		if err := f.rejoin(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// steady counts the Lease traffic over the window and reads every
// replica's RSS and CPU time.
func (f *fleet) steady(ctx context.Context, r *scaleResult) error {
	before, err := f.b.scrapeLeaseTraffic(ctx)
	if err != nil {
		return err
	}
	cpuBefore := make([]time.Duration, len(f.reps))
	for i, s := range f.reps {
		if cpuBefore[i], err = procstat.CPUTime(s.Pid()); err != nil {
			return err
		}
	}
	pids := make([]int, len(f.reps))
	for i, s := range f.reps {
		pids[i] = s.Pid()
	}
	if err := sleep(ctx, r.window); err != nil {
		return err
	}
	after, err := f.b.scrapeLeaseTraffic(ctx)
	if err != nil {
		return err
	}
	r.traffic = after.minus(before).perMinute(r.window)
	for i, s := range f.reps {
		if s.Exited() || s.Pid() != pids[i] {
			f.b.log.Warn("replica ended during the steady window; left out of RSS and CPU", "pod", s.Opts.Pod, "err", s.ExitErr(), "log", s.LogTail(5))
			r.lost++
			continue
		}
		rss, err := procstat.RSS(s.Pid())
		if err != nil {
			return err
		}
		cpu, err := procstat.CPUTime(s.Pid())
		if err != nil {
			return err
		}
		millicores := float64(cpu-cpuBefore[i]) / float64(r.window) * 1000
		if s.HasStatusFile() {
			r.rssLeader, r.cpuLeader = rss, millicores
			continue
		}
		r.rssFollowers = append(r.rssFollowers, rss)
		r.cpuFollowers = append(r.cpuFollowers, millicores)
	}
	return nil
}

// failoverTimeout bounds a wait for the next leader after a crash: the
// Lease's duration and then some.
const failoverTimeout = 90 * time.Second

// graceful sends the leader SIGTERM, times the next status file, and
// restarts the old leader as a follower.
func (f *fleet) graceful(ctx context.Context, r *scaleResult) error {
	leader, err := f.status.leader(ctx, failoverTimeout)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := leader.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	next, at, err := f.status.next(ctx, leader, start, failoverTimeout)
	if err != nil {
		return err
	}
	r.handover = append(r.handover, at.Sub(start))
	if os.Getenv("BENCH_TRACE") != "" {
		time.Sleep(500 * time.Millisecond)
		fmt.Fprintf(os.Stderr, "TRACE start=%s file=%s\n", start.UTC().Format("15:04:05.000000"), at.UTC().Format("15:04:05.000000"))
		for _, l := range strings.Split(leader.Log(), "\n") {
			if strings.Contains(l, "stopped leading") || strings.Contains(l, "released lease") ||
				strings.Contains(l, "handed the lease") || strings.Contains(l, "did not take") {
				fmt.Fprintln(os.Stderr, "TRACE old:", l)
			}
		}
		for _, l := range strings.Split(next.Log(), "\n") {
			if strings.Contains(l, "started leading") || strings.Contains(l, "leader observed") {
				fmt.Fprintln(os.Stderr, "TRACE new:", l)
			}
		}
	}
	select {
	case <-leader.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not exit within 30s of SIGTERM", leader.Opts.Pod)
	}
	return f.rejoin(ctx, leader)
}

// crash kills the leader and times the next status file from the Lease's
// expiry, as the bench's watch observed it; then restarts the old leader.
func (f *fleet) crash(ctx context.Context, r *scaleResult) error {
	leader, err := f.status.leader(ctx, failoverTimeout)
	if err != nil {
		return err
	}
	if err := leader.Kill(); err != nil {
		return err
	}
	expiry, err := f.lease.expiry(leader.Opts.Pod) // no renew after the kill
	if err != nil {
		return err
	}
	_, at, err := f.status.next(ctx, leader, time.Now(), failoverTimeout)
	if err != nil {
		return err
	}
	r.crash = append(r.crash, at.Sub(expiry))
	return f.rejoin(ctx, leader)
}

// restart kills the leader and starts the same replica again, with the
// same identity and POD_UID, as the kubelet restarts a crashed container;
// it times from the kill until any replica's status file.
func (f *fleet) restart(ctx context.Context, r *scaleResult) error {
	leader, err := f.status.leader(ctx, failoverTimeout)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := leader.Kill(); err != nil {
		return err
	}
	// The file the killed process left is not news; see rejoin.
	if err := removeStatusFile(leader); err != nil {
		return err
	}
	if err := leader.Restart(); err != nil {
		return err
	}
	_, at, err := f.status.next(ctx, nil, start, failoverTimeout)
	if err != nil {
		return err
	}
	r.restart = append(r.restart, at.Sub(start))
	return sleep(ctx, 3*time.Second)
}

// resign runs `resign` with the leader's environment and times the next
// status file from the command's start.
func (f *fleet) resign(ctx context.Context, r *scaleResult) error {
	leader, err := f.status.leader(ctx, failoverTimeout)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, leader.Opts.Binary, "resign")
	cmd.Env = append(os.Environ(), replicaEnv(leader)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start resign: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s resign: %w: %s", filepath.Base(leader.Opts.Binary), err, firstLine(out.String()))
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s resign did not end within 10s: %s", filepath.Base(leader.Opts.Binary), firstLine(out.String()))
	}
	_, at, err := f.status.next(ctx, leader, start, 30*time.Second)
	if err != nil {
		return err
	}
	r.resign = append(r.resign, at.Sub(start))
	// The old leader stays up as a follower; let it settle as after a restart.
	return sleep(ctx, time.Second)
}

// rejoin starts a replica again that was stopped, as a follower, and waits
// as in a rollout for it to start and observe. A SIGKILLed process leaves
// its status file; the bench removes it so that the next that appears is
// news (leader-elector removes a stale one at start itself, the baseline
// does not).
func (f *fleet) rejoin(ctx context.Context, s *testcluster.Sidecar) error {
	<-s.Done()
	if err := removeStatusFile(s); err != nil {
		return err
	}
	if err := s.Restart(); err != nil {
		return err
	}
	return sleep(ctx, 3*time.Second)
}

func removeStatusFile(s *testcluster.Sidecar) error {
	if err := os.Remove(s.StatusFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the status file of %s: %w", s.Opts.Pod, err)
	}
	return nil
}

// replicaEnv is the environment testcluster.StartSidecar gives s, as a
// command run in its container would have it.
func replicaEnv(s *testcluster.Sidecar) []string {
	o := s.Opts
	env := []string{
		"LEASE_NAME=" + o.Lease, "NAMESPACE=" + o.Namespace, "POD_NAME=" + o.Pod, "IDENTITY=" + o.Pod,
		"KUBECONFIG=" + o.Kubeconfig, "STATUS_FILE=" + s.StatusFile,
	}
	if u := s.HealthURL(); u != "" {
		env = append(env, "HEALTH_PORT="+u[strings.LastIndexByte(u, ':')+1:])
	}
	return append(env, o.Env...)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
