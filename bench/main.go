// Command bench measures leader-elector side by side with client-go's own
// tools/leaderelection (bench/clientgo-elector) on the local control plane:
// graceful handover, how fast an app beside a follower hears of the new
// leader (push), how fast a command run only on the leader moves to the new
// one (gatekeeper), follower API traffic, resident memory, and, for
// leader-elector, how fast a Service selecting role=leader follows a handover
// through the real endpointslice controller. Run it with `make bench`. It is a
// measurement, not a test: it prints numbers and never fails on them.
//
// BENCH_ROUNDS (default 20) sets the handovers per measurement and
// BENCH_WINDOW (default 60s) the steady-state traffic window.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/leader-elector/leader-elector/internal/testcluster"
)

const (
	lease    = "myapp-lock"
	app      = "bench"
	service  = "bench-leader"
	replicas = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	out    io.Writer
	cp     *testcluster.ControlPlane
	dir    string
	rounds int
	window time.Duration
}

// electorKind is one implementation under measurement.
type electorKind struct {
	name   string
	binary string
	env    []string
	// listen is how an app beside a follower hears of a new leader.
	listen listener
}

// mode is what a measurement times in each handover, from the leader's
// SIGTERM on.
type mode int

const (
	graceful   mode = iota // until the next status file; the steady state is measured first
	routed                 // until the Service names the next leader alone
	push                   // until an app beside a follower hears of the next leader
	gatekeeper             // until the next leader's command has run
)

func run(ctx context.Context, out io.Writer) (err error) {
	b := &bench{out: out, rounds: envInt("BENCH_ROUNDS", 20), window: envDuration("BENCH_WINDOW", time.Minute)}
	fmt.Fprintf(out, "leader-elector benchmark, %s, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	if b.cp, err = testcluster.Start(ctx, testcluster.Options{Log: os.Stderr}); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.cp.Stop()) }()
	if b.dir, err = testcluster.TempDir("bench"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	if err := b.cp.StartControllerManager(ctx, "endpointslice,serviceaccount"); err != nil {
		return err
	}
	ours, err := testcluster.BuildSidecar(b.dir)
	if err != nil {
		return err
	}
	theirs, err := testcluster.Build(b.dir, "./bench/clientgo-elector", "clientgo-elector")
	if err != nil {
		return err
	}
	kinds := []electorKind{
		{name: "leader-elector", binary: ours, listen: hearWatch},
		{name: "client-go elector", binary: theirs, listen: hearNewLeaderFile},
	}
	results := map[string]*result{}
	for _, k := range kinds {
		r := &result{}
		fmt.Fprintf(os.Stderr, "bench: measuring %s (%d handovers, %s of steady state)...\n", k.name, b.rounds, b.window)
		if err := b.measure(ctx, k, graceful, r); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: measuring %s push to followers (%d handovers)...\n", k.name, b.rounds)
		if err := b.measure(ctx, k, push, r); err != nil {
			return fmt.Errorf("%s push: %w", k.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: measuring %s running a command on the leader (%d handovers)...\n", k.name, b.rounds)
		if err := b.measure(ctx, k, gatekeeper, r); err != nil {
			return fmt.Errorf("%s gatekeeper: %w", k.name, err)
		}
		results[k.name] = r
	}
	fmt.Fprintf(os.Stderr, "bench: measuring routing through the endpointslice controller (%d handovers)...\n", b.rounds)
	routing := &result{}
	if err := b.measure(ctx, electorKind{name: "leader-elector", binary: ours, env: []string{"LABEL_POD_ROLE=true"}}, routed, routing); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	b.report(results[kinds[0].name], results[kinds[1].name], routing)
	return nil
}

// result holds what one measurement found.
type result struct {
	handover       []time.Duration // SIGTERM of the leader until the next status file exists
	routing        []time.Duration // SIGTERM until the Service names the next leader alone
	push           []time.Duration // SIGTERM until an app beside a follower hears of the next leader
	command        []time.Duration // SIGTERM until the next leader's command has run
	gap            []time.Duration // time with no ready endpoint, per handover
	followerReqs   float64         // non-watch requests per minute per follower
	followerWatch  float64         // watch requests per minute per follower
	leaderReqs     float64         // requests per minute of the leader
	rssLeader      int64           // bytes
	rssFollowerMax int64
	cpuLeader      float64 // millicores over the window
	cpuFollowerMax float64
}

// replica is one pod's elector behind a counting proxy.
type replica struct {
	s     *testcluster.Sidecar
	proxy *testcluster.Proxy
}

// measure starts the replicas of k in a namespace of their own and adds
// b.rounds handovers, timed as m says, to r.
func (b *bench) measure(ctx context.Context, k electorKind, m mode, r *result) error {
	ns, err := b.cp.CreateNamespace(ctx, strings.ReplaceAll(strings.ToLower(k.name), " ", "-"))
	if err != nil {
		return err
	}
	defer b.cp.DeleteNamespace(context.WithoutCancel(ctx), ns)
	if err := b.cp.ApplyManifests(ctx, ns, filepath.Join(testcluster.RepoRoot(), "deploy", "rbac.yaml")); err != nil {
		return err
	}
	if m == routed {
		if err := b.cp.CreateNode(ctx, "node-1"); err != nil {
			return err
		}
		if err := b.cp.CreateLeaderService(ctx, ns, service, app); err != nil {
			return err
		}
	}
	token, err := b.cp.ServiceAccountToken(ctx, ns, testcluster.ServiceAccount)
	if err != nil {
		return err
	}
	var reps []*replica
	defer func() {
		for _, r := range reps {
			_ = r.s.Terminate()
			r.proxy.Close()
		}
	}()
	for i := range replicas {
		pod := fmt.Sprintf("replica-%d", i)
		node := ""
		if m == routed {
			node = "node-1"
		}
		if _, err := b.cp.CreatePod(ctx, ns, pod, testcluster.PodOptions{Labels: map[string]string{"app": app}, NodeName: node}); err != nil {
			return err
		}
		if m == routed {
			if err := b.cp.MarkRunning(ctx, ns, pod, fmt.Sprintf("10.244.0.%d", i+10)); err != nil {
				return err
			}
		}
		proxy, err := testcluster.NewProxy(b.cp.URL, b.cp.CAData, token)
		if err != nil {
			return err
		}
		dir := filepath.Join(b.dir, ns, pod)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		kubeconfig := filepath.Join(dir, "kubeconfig")
		if err := testcluster.WriteKubeconfig(kubeconfig, proxy.URL, nil, ""); err != nil {
			return err
		}
		opts := testcluster.SidecarOptions{
			Binary: k.binary, Namespace: ns, Pod: pod, Lease: lease, Kubeconfig: kubeconfig, Env: k.env, Dir: dir,
		}
		switch m {
		case push: // the baseline's; leader-elector reads no such variable
			opts.Env = append(slices.Clone(k.env), "NEW_LEADER_FILE="+newLeaderFile(dir))
		case gatekeeper:
			opts.Args = []string{"--", "/bin/sh", "-c", commandScript(filepath.Join(b.dir, ns))}
		}
		s, err := testcluster.StartSidecar(opts)
		if err != nil {
			return err
		}
		reps = append(reps, &replica{s: s, proxy: proxy})
	}
	if _, err := testcluster.WaitForLeader(ctx, sidecars(reps), "", 60*time.Second); err != nil {
		return err
	}
	if m == graceful {
		if err := b.steadyState(ctx, reps, r); err != nil {
			return err
		}
	}
	for i := range b.rounds {
		if err := b.handover(ctx, k, reps, r, ns, m); err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
	}
	return nil
}

// steadyState counts each replica's requests over the window and reads RSS.
func (b *bench) steadyState(ctx context.Context, reps []*replica, r *result) error {
	select { // let start-up traffic pass
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	before := make([]testcluster.Counts, len(reps))
	cpuBefore := make([]time.Duration, len(reps))
	for i, rep := range reps {
		before[i] = rep.proxy.Counts()
		var err error
		if cpuBefore[i], err = cpuTime(rep.s.Pid()); err != nil {
			return err
		}
	}
	select {
	case <-time.After(b.window):
	case <-ctx.Done():
		return ctx.Err()
	}
	perMin := func(n int64) float64 { return float64(n) / b.window.Minutes() }
	followers := 0
	for i, rep := range reps {
		c := rep.proxy.Counts().Minus(before[i])
		rss, err := rssBytes(rep.s.Pid())
		if err != nil {
			return err
		}
		cpu, err := cpuTime(rep.s.Pid())
		if err != nil {
			return err
		}
		millicores := float64(cpu-cpuBefore[i]) / float64(b.window) * 1000
		if rep.s.HasStatusFile() {
			r.leaderReqs = perMin(c.Requests + c.Watches)
			r.rssLeader, r.cpuLeader = rss, millicores
			continue
		}
		r.cpuFollowerMax = max(r.cpuFollowerMax, millicores)
		followers++
		r.followerReqs += perMin(c.Requests)
		r.followerWatch += perMin(c.Watches)
		r.rssFollowerMax = max(r.rssFollowerMax, rss)
	}
	if followers > 0 {
		r.followerReqs /= float64(followers)
		r.followerWatch /= float64(followers)
	}
	return nil
}

// handover terminates the leader, measures as m says, and restarts it as a
// follower.
func (b *bench) handover(ctx context.Context, k electorKind, reps []*replica, r *result, ns string, m mode) error {
	ctx, cancel := context.WithCancel(ctx) // ends the listeners' streams
	defer cancel()
	leader, err := testcluster.WaitForLeader(ctx, sidecars(reps), "", 60*time.Second)
	if err != nil {
		return err
	}
	var followers []*testcluster.Sidecar
	for _, s := range sidecars(reps) {
		if s != leader {
			followers = append(followers, s)
		}
	}
	var heard func() error
	switch m {
	case routed:
		if _, _, err := b.cp.WaitRouted(ctx, ns, service, leader.Opts.Pod, time.Now(), 30*time.Second); err != nil {
			return err
		}
	case push:
		if heard, err = k.listen(ctx, followers, leader.Opts.Pod); err != nil {
			return err
		}
	case gatekeeper:
		for _, s := range sidecars(reps) {
			if err := os.Remove(marker(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	start := time.Now()
	if err := leader.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	switch m {
	case routed:
		next, err := testcluster.WaitForLeader(ctx, sidecars(reps), leader.Opts.Pod, 60*time.Second)
		if err != nil {
			return err
		}
		took, gap, err := b.cp.WaitRouted(ctx, ns, service, next.Opts.Pod, start, 60*time.Second)
		if err != nil {
			return err
		}
		r.routing, r.gap = append(r.routing, took), append(r.gap, gap)
	case push:
		if err := heard(); err != nil {
			return err
		}
		r.push = append(r.push, time.Since(start))
	case gatekeeper:
		if err := waitForCommand(ctx, followers); err != nil {
			return err
		}
		r.command = append(r.command, time.Since(start))
	default:
		if _, err := testcluster.WaitForLeader(ctx, sidecars(reps), leader.Opts.Pod, 60*time.Second); err != nil {
			return err
		}
		r.handover = append(r.handover, time.Since(start))
	}
	select {
	case <-leader.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not exit within 30s of SIGTERM", leader.Opts.Pod)
	}
	if err := leader.Restart(); err != nil {
		return err
	}
	// Give the restarted replica time to start and observe, as in a rollout.
	select {
	case <-time.After(3 * time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sidecars returns the replicas' sidecars.
func sidecars(reps []*replica) []*testcluster.Sidecar {
	out := make([]*testcluster.Sidecar, len(reps))
	for i, r := range reps {
		out[i] = r.s
	}
	return out
}

func (b *bench) report(ours, theirs, routing *result) {
	tw := tabwriter.NewWriter(b.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nmeasure\tleader-elector\tclient-go elector\n")
	fmt.Fprintf(tw, "graceful handover p50 (SIGTERM to next status file, n=%d)\t%s\t%s\n", len(ours.handover), pct(ours.handover, 50), pct(theirs.handover, 50))
	fmt.Fprintf(tw, "graceful handover p99\t%s\t%s\n", pct(ours.handover, 99), pct(theirs.handover, 99))
	fmt.Fprintf(tw, "push to followers p50 (SIGTERM until one hears of the next leader, n=%d)\t%s\t%s\n", len(ours.push), pct(ours.push, 50), pct(theirs.push, 50))
	fmt.Fprintf(tw, "push to followers p99\t%s\t%s\n", pct(ours.push, 99), pct(theirs.push, 99))
	fmt.Fprintf(tw, "gatekeeper handover p50 (SIGTERM until the next leader's command runs, n=%d)\t%s\t%s\n", len(ours.command), pct(ours.command, 50), pct(theirs.command, 50))
	fmt.Fprintf(tw, "gatekeeper handover p99\t%s\t%s\n", pct(ours.command, 99), pct(theirs.command, 99))
	fmt.Fprintf(tw, "follower requests/min, not counting watches (window %s)\t%.1f\t%.1f\n", b.window, ours.followerReqs, theirs.followerReqs)
	fmt.Fprintf(tw, "follower watch requests/min\t%.1f\t%.1f\n", ours.followerWatch, theirs.followerWatch)
	fmt.Fprintf(tw, "leader requests/min\t%.1f\t%.1f\n", ours.leaderReqs, theirs.leaderReqs)
	fmt.Fprintf(tw, "resident memory, leader\t%s\t%s\n", mib(ours.rssLeader), mib(theirs.rssLeader))
	fmt.Fprintf(tw, "resident memory, largest follower\t%s\t%s\n", mib(ours.rssFollowerMax), mib(theirs.rssFollowerMax))
	fmt.Fprintf(tw, "CPU, leader (millicores over the window)\t%.2f\t%.2f\n", ours.cpuLeader, theirs.cpuLeader)
	fmt.Fprintf(tw, "CPU, busiest follower (millicores)\t%.2f\t%.2f\n", ours.cpuFollowerMax, theirs.cpuFollowerMax)
	fmt.Fprintf(tw, "routing handover p50 (SIGTERM until the Service names the next leader alone, n=%d)\t%s\t-\n", len(routing.routing), pct(routing.routing, 50))
	fmt.Fprintf(tw, "routing handover p99\t%s\t-\n", pct(routing.routing, 99))
	fmt.Fprintf(tw, "routing gap p50 (no ready endpoint during a handover)\t%s\t-\n", pct(routing.gap, 50))
	fmt.Fprintf(tw, "routing gap p99\t%s\t-\n", pct(routing.gap, 99))
	_ = tw.Flush()
	fmt.Fprintln(b.out, "push: leader-elector's GET /watch (SSE) on each follower; the baseline's OnNewLeader, written to a file on each follower, polled every 1ms.")
}

// pct is the nearest-rank percentile.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)].Round(100 * time.Microsecond).String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rssBytes reads VmRSS of a process.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cpuTime reads the user and system CPU time of a process.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	// Fields after the command name, which may hold spaces: state is 3rd,
	// utime 14th and stime 15th of the whole line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil && d > 0 {
		return d
	}
	return def
}
