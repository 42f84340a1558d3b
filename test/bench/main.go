// Command bench measures leader-elector side by side with client-go's own
// tools/leaderelection (bench/clientgo-elector) on the local control plane.
// Run it with `make bench`. It is a measurement, not a test: it prints
// numbers and never fails on them.
//
// For each replica count N (BENCH_REPLICAS, default "3,50,200") and each
// elector it starts N replicas talking to kube-apiserver directly, and
// measures
//   - the graceful handover, SIGTERM of the leader until the next status
//     file, over BENCH_ROUNDS (default 20) rounds;
//   - the crash failover, SIGKILL of the leader, as the time from the Lease's
//     expiry (the last renew the bench's own Lease watch saw, plus
//     leaseDurationSeconds) until the next status file, over
//     BENCH_CRASH_ROUNDS (default 5) rounds;
//   - a restart of the leader's sidecar: SIGKILL, then the same replica
//     started again with the same identity and POD_UID, until any replica's
//     status file, over BENCH_CRASH_ROUNDS rounds;
//   - a handover on request (leader-elector only): `leader-elector resign`
//     run with the leader's environment, until the next status file, over
//     BENCH_ROUNDS rounds; "n/a (error: ...)" while the command fails;
//   - over a steady window (BENCH_WINDOW, default 60s at N<=3, half of it
//     at N<=50, a third above; at least 10s): Lease requests per minute by
//     verb and Lease watch events per minute, from kube-apiserver's own
//     /metrics, and resident memory and CPU per replica, from /proc.
//
// With N=3 in the list it also runs the older three-replica measurements,
// each replica behind a counting proxy: how fast an app beside a follower
// hears of the new leader (push), how fast a command run only on the
// leader moves to the new one (gatekeeper), and, for leader-elector, how
// fast a Service selecting role=leader follows a handover through the real
// endpointslice controller.
//
// Last, where a real node starts (testcluster.StartNode: root, Debian's
// packages), it runs deploy/example.yaml as three real pods and measures,
// over BENCH_POD_ROUNDS (default 5; 0 skips it) rounds, a SIGKILL of the
// leader's sidecar to its resumed term after the kubelet's restart, and a
// delete of the leader's pod to the next leader (bench/pods.go); then, with
// an app that takes 5 s to stop, each elector as the sidecar in turn, over
// BENCH_LIFECYCLE_ROUNDS (default 10; 0 skips it) rounds each, a delete, an
// eviction, a scale-down and a rollout restart: the call to the next
// leader's status file, leader changes, and the longest time no app saw a
// status file (bench/lifecycle.go). Each round waits a random time of up to
// 2 s (both electors' RETRY_PERIOD) before its call, so that the calls fall
// at any point of the leader's renew period.
//
// It prints Markdown tables and writes them, with an SVG chart of the
// graceful handovers, to BENCH_OUT (default bench/out/): results.md and
// handover.svg.
//
// BENCH_ELECTORS (both, the default; ours; client-go) measures one side
// only, to try a change quickly; the tables then leave the other side out,
// and the N=3 measurements behind a proxy, which compare the two, are not
// run. BENCH_ELECTORS=takeover measures what the take-over saves: ours
// beside ours without POD_IP, which takes no offers and makes none, so that
// every handover is a release (the replicas between processes only).
//
// BENCH_TRACE=1 prints, after each graceful handover of leader-elector, the
// old and the new leader's log lines of it (stopped leading, handed the
// lease to the standby or released it, leader observed, started leading),
// to see where the time goes. In the lifecycle section it runs the sidecars
// with LOG_LEVEL=debug and prints, after each round, both leaders' log lines
// from the call to a second after the next status file, each sidecar's time
// spent waiting for a CPU during the round, and which programs used the
// machine's CPUs in the round's first 150 ms.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

const (
	lease = "myapp-lock"
	app   = "bench"
	// withoutTakeOver is leader-elector without POD_IP (BENCH_ELECTORS=takeover).
	withoutTakeOver = "leader-elector without take-over"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the bench's environment.
type settings struct {
	replicas    []int
	rounds      int
	crashRounds int
	podRounds   int
	// lifecycleRounds: BENCH_LIFECYCLE_ROUNDS of each op of lifecycleOps.
	lifecycleRounds int
	window          time.Duration // at N<=3; see windowFor
	electors        string        // BENCH_ELECTORS: "both", "ours", "client-go" or "takeover"
	out             string
}

func loadSettings(getenv func(string) string) (settings, error) {
	s := settings{out: getenv("BENCH_OUT"), electors: getenv("BENCH_ELECTORS")}
	var errs []error
	s.rounds, errs = envInt(getenv, "BENCH_ROUNDS", 20, errs)
	s.crashRounds, errs = envInt(getenv, "BENCH_CRASH_ROUNDS", 5, errs)
	s.podRounds, errs = envInt(getenv, "BENCH_POD_ROUNDS", 5, errs)
	s.lifecycleRounds, errs = envInt(getenv, "BENCH_LIFECYCLE_ROUNDS", 10, errs)
	s.window, errs = envDuration(getenv, "BENCH_WINDOW", time.Minute, errs)
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	switch s.electors {
	case "":
		s.electors = "both"
	case "both", "ours", "client-go", "takeover":
	default:
		return s, fmt.Errorf("BENCH_ELECTORS=%q: want both, ours, client-go or takeover", s.electors)
	}
	if s.out == "" {
		s.out = filepath.Join(testcluster.TestRoot(), "bench", "out")
	}
	list := getenv("BENCH_REPLICAS")
	if list == "" {
		list = "3,50,200"
	}
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return s, fmt.Errorf("BENCH_REPLICAS=%q: want a comma-separated list of replica counts of at least 2", list)
		}
		if !slices.Contains(s.replicas, n) {
			s.replicas = append(s.replicas, n)
		}
	}
	return s, nil
}

// windowFor is the steady window at n replicas: shorter where there is more
// traffic to count, so that N=200 does not take an hour on two cores.
func (s settings) windowFor(n int) time.Duration {
	w := s.window
	switch {
	case n > 50:
		w /= 3
	case n > 3:
		w /= 2
	}
	return max(w, 10*time.Second)
}

type bench struct {
	out    io.Writer
	log    *slog.Logger
	cp     *testcluster.ControlPlane
	dir    string
	rounds int
	set    settings

	mu    sync.Mutex
	procs []*testcluster.Sidecar // every sidecar started, for the final kill
}

// electorKind is one implementation under measurement.
type electorKind struct {
	name   string
	binary string
	env    []string
	// listen is how an app beside a follower hears of a new leader.
	listen listener
	// resign is whether it has a `resign` command.
	resign bool
}

func run(ctx context.Context, out io.Writer, getenv func(string) string) (err error) {
	set, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	b := &bench{out: out, rounds: set.rounds, set: set, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	started := time.Now()
	header := fmt.Sprintf("leader-elector benchmark, %s, %s", started.UTC().Format("2006-01-02 15:04 MST"), machine())
	b.log.Info(header)
	if b.cp, err = testcluster.Start(ctx, testcluster.Options{Log: os.Stderr}); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.cp.Stop()) }()
	if b.dir, err = testcluster.TempDir("bench"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	defer b.killAll() // also on error or Ctrl-C: no replica outlives the bench
	if err := b.cp.StartControllerManager(ctx, "endpointslice,serviceaccount"); err != nil {
		return err
	}
	ours, err := testcluster.BuildSidecar(b.dir)
	if err != nil {
		return err
	}
	theirs, err := testcluster.Build(b.dir, "./test/bench/clientgo-elector", "clientgo-elector")
	if err != nil {
		return err
	}
	kinds := []electorKind{
		// POD_IP, as the Downward API gives it: with it and the health port
		// a standby takes the leader's take-over offer (POST /v1/take-over).
		// HEALTH_STREAMS: the push measure listens on GET /watch.
		{name: "leader-elector", binary: ours, listen: hearWatch, resign: true, env: []string{"POD_IP=127.0.0.1", "HEALTH_STREAMS=true"}},
		{name: "client-go elector", binary: theirs, listen: hearNewLeaderFile},
	}
	switch set.electors {
	case "ours":
		kinds = kinds[:1]
	case "client-go":
		kinds = kinds[1:]
	case "takeover":
		// What the take-over saves: the same binary without POD_IP takes
		// no offers and makes none, so every handover is a release.
		kinds = []electorKind{kinds[0], {name: withoutTakeOver, binary: ours, listen: hearWatch, resign: true, env: []string{"HEALTH_STREAMS=true"}}}
	}
	rep := &report{header: header, settings: set}
	idleWindow := set.windowFor(1000)
	b.log.Info("measuring the control plane alone", "window", idleWindow)
	if rep.idle, err = b.idleTraffic(ctx, idleWindow); err != nil {
		return err
	}
	for _, n := range set.replicas {
		for _, k := range kinds {
			b.log.Info("measuring", "elector", k.name, "replicas", n, "rounds", set.rounds, "crashRounds", set.crashRounds, "window", set.windowFor(n))
			r, err := b.scale(ctx, k, n)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil { // the table says so; the other measurements go on
				b.log.Error("measurement failed", "elector", k.name, "replicas", n, "err", err)
				r.err = err
			}
			rep.scale = append(rep.scale, r)
		}
	}
	if slices.Contains(set.replicas, legacyReplicas) && set.electors == "both" { // side by side only
		rep.legacy = map[string]*legacyResult{}
		for _, k := range kinds {
			r := &legacyResult{}
			b.log.Info("measuring push to followers", "elector", k.name, "rounds", b.rounds)
			if err := b.measure(ctx, k, push, r); err != nil {
				return fmt.Errorf("%s push: %w", k.name, err)
			}
			b.log.Info("measuring a command run on the leader", "elector", k.name, "rounds", b.rounds)
			if err := b.measure(ctx, k, gatekeeper, r); err != nil {
				return fmt.Errorf("%s gatekeeper: %w", k.name, err)
			}
			rep.legacy[k.name] = r
		}
		b.log.Info("measuring routing through the endpointslice controller", "rounds", b.rounds)
		rep.routing = &legacyResult{}
		if err := b.measure(ctx, electorKind{name: "leader-elector", binary: ours, env: []string{"LABEL_POD_ROLE=true", "POD_IP=127.0.0.1"}}, routed, rep.routing); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
	}
	if err := b.realPods(ctx, set, kinds, rep); err != nil {
		return err
	}
	rep.took = time.Since(started)
	return rep.write(out, set.out)
}

// realPods runs the real-pod sections, on one node.
func (b *bench) realPods(ctx context.Context, set settings, kinds []electorKind, rep *report) error {
	if set.podRounds == 0 && set.lifecycleRounds == 0 || set.electors == "takeover" {
		return nil
	}
	node, err := b.cp.StartNode(ctx, testcluster.NodeOptions{})
	if err != nil {
		na := "n/a: the node cannot start here: " + err.Error()
		rep.pods, rep.lifecycle = &podResult{na: na}, &lifecycleResult{na: na}
		return nil
	}
	defer func() {
		if err := node.Stop(); err != nil {
			b.log.Error("stop the node", "err", err)
		}
	}()
	if set.podRounds > 0 {
		b.log.Info("measuring real pods", "rounds", set.podRounds)
		rep.pods = b.pods(ctx, node, set.podRounds)
	}
	if set.lifecycleRounds > 0 && ctx.Err() == nil {
		b.log.Info("measuring deletes, evictions, scale-downs and rollouts in real pods", "rounds", set.lifecycleRounds)
		var names []string
		for _, k := range kinds {
			names = append(names, k.name)
		}
		rep.lifecycle = b.lifecycle(ctx, node, set.lifecycleRounds, names)
	}
	return ctx.Err()
}

// startSidecar starts a sidecar and remembers it for killAll.
func (b *bench) startSidecar(opts testcluster.SidecarOptions) (*testcluster.Sidecar, error) {
	s, err := testcluster.StartSidecar(opts)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.procs = append(b.procs, s)
	b.mu.Unlock()
	return s, nil
}

// killAll kills every sidecar the bench started that still runs.
func (b *bench) killAll() {
	b.mu.Lock()
	procs := b.procs
	b.procs = nil
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range procs {
		if !s.Exited() {
			wg.Go(func() { _ = s.Kill() })
		}
	}
	wg.Wait()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// envInt reads key as a count of zero or more; def when unset. A bad value
// is appended to errs.
func envInt(getenv func(string) string, key string, def int, errs []error) (int, []error) {
	v := getenv(key)
	if v == "" {
		return def, errs
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def, append(errs, fmt.Errorf("%s=%q: want a whole number of zero or more", key, v))
	}
	return n, errs
}

// envDuration reads key as a positive duration; def when unset. A bad value
// is appended to errs.
func envDuration(getenv func(string) string, key string, def time.Duration, errs []error) (time.Duration, []error) {
	v := getenv(key)
	if v == "" {
		return def, errs
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return def, append(errs, fmt.Errorf("%s=%q: want a positive duration such as 30s", key, v))
	}
	return d, errs
}
