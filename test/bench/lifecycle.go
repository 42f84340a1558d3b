package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// What users do to a workload's pods, in the order measured.
var lifecycleOps = []lifecycleOp{
	{"delete", "kubectl delete pod of the leader", deleteLeader, nil},
	{"evict", "eviction of the leader (Eviction API, deploy/'s PodDisruptionBudget)", evictLeader, nil},
	{"scale-down", "scale-down from 3 to 1, the leader removed", scaleDownPastLeader, scaleBack},
	{"rollout", "kubectl rollout restart (timed from the old leader's deletion, as a watch saw it)", rolloutRestart, nil},
}

type lifecycleOp struct {
	name, what string
	// do removes the leader's pod (or begins to) and waits until the
	// workload settled; the window it measures ends when do returns. A
	// non-zero from starts the time to the next leader there instead of at
	// the call.
	do func(ctx context.Context, w *podWorkload, leader string) (from time.Time, err error)
	// restore, if set, brings the workload back after the window.
	restore func(ctx context.Context, w *podWorkload) error
}

// clientGoRef is the image of the bench's client-go elector.
const clientGoRef = "docker.io/library/clientgo-elector:bench"

// clientGoSidecar turns deploy/example.yaml's sidecar into the client-go
// elector (ReleaseOnCancel): no probes, as it serves none; its identity
// the pod name; the status file the app reads.
const clientGoSidecar = `  - target: {kind: Deployment, name: myapp}
    patch: |
      - op: remove
        path: /spec/template/spec/initContainers/0/startupProbe
      - op: remove
        path: /spec/template/spec/initContainers/0/livenessProbe
      - op: remove
        path: /spec/template/spec/initContainers/0/readinessProbe
      - op: add
        path: /spec/template/spec/initContainers/0/env/-
        value: {name: IDENTITY, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
      - op: add
        path: /spec/template/spec/initContainers/0/env/-
        value: {name: STATUS_FILE, value: /tmp/leader_status}
`

// lifecycleResult is what the lifecycle section measured, by elector and op.
type lifecycleResult struct {
	na       string
	rounds   int
	electors []string
	stats    map[string]map[string]*opStats
}

// opStats are one op's rounds for one elector.
type opStats struct {
	took     []time.Duration // the call to the next leader's status file
	gap      []time.Duration // the longest time no app saw a status file
	changes  []int           // leader changes until the workload settled
	overlaps int             // samples with two status files
	err      error
}

// lifecycle runs deploy/example.yaml, with an app that takes 5 s to stop,
// for each elector in turn on node, and measures rounds of each op.
func (b *bench) lifecycle(ctx context.Context, node *testcluster.Node, rounds int, electors []string) *lifecycleResult {
	r := &lifecycleResult{rounds: rounds, stats: map[string]map[string]*opStats{}}
	for _, e := range electors {
		overlay := func(ns string) string { return node.PodOverlay(ns) + testcluster.SlowAppStop + traceLog() }
		if e == "client-go elector" {
			img, err := testcluster.BuildStaticImage(ctx, filepath.Join(node.Dir, "images"), "clientgo-elector", clientGoRef, "./bench/clientgo-elector")
			if err == nil {
				err = node.ImportImage(ctx, img)
			}
			if err != nil {
				r.na = "n/a: " + err.Error()
				return r
			}
			overlay = func(ns string) string {
				return node.PodOverlayWith(ns, clientGoRef) + testcluster.SlowAppStop + clientGoSidecar + traceLog()
			}
		}
		r.electors = append(r.electors, e)
		r.stats[e] = map[string]*opStats{}
		w, err := b.startWorkload(ctx, node, overlay)
		if err != nil {
			r.na = fmt.Sprintf("n/a: %s: %v", e, err)
			return r
		}
		for _, op := range lifecycleOps {
			s := &opStats{}
			r.stats[e][op.name] = s
			for i := range rounds {
				if s.err = b.lifecycleRound(ctx, w, op, s); s.err != nil {
					b.log.Error("lifecycle round failed", "elector", e, "op", op.name, "round", i+1, "err", s.err)
					break
				}
				b.log.Info("lifecycle", "elector", e, "op", op.name, "round", i+1, "took", s.took[i], "changes", s.changes[i], "gap", s.gap[i])
			}
		}
		w.stop()
	}
	return r
}

// podWorkload is deploy/example.yaml in one namespace, and the timeline of
// its status files.
type podWorkload struct {
	b     *bench
	node  *testcluster.Node
	ns    string
	files *fileTimeline
	stop  func()
}

func (b *bench) startWorkload(ctx context.Context, node *testcluster.Node, overlay func(ns string) string) (*podWorkload, error) {
	ns, err := b.cp.CreateNamespace(ctx, "bench-lifecycle")
	if err != nil {
		return nil, err
	}
	objs, err := testcluster.KustomizeDeploy(overlay(ns))
	if err != nil {
		return nil, err
	}
	if err := b.cp.ApplyObjects(ctx, ns, objs); err != nil {
		return nil, err
	}
	if _, err := b.cp.WaitExamplePods(ctx, ns, 3, 3*time.Minute); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	w := &podWorkload{b: b, node: node, ns: ns}
	w.files = watchFiles(fctx, node, ns)
	w.stop = func() {
		cancel()
		if err := b.cp.DeleteExample(context.Background(), ns, 2*time.Minute); err != nil {
			b.log.Error("delete the example", "err", err)
		}
	}
	return w, nil
}

// lifecycleRound waits for one leader, runs op on it and adds what the
// status files showed meanwhile to s.
func (b *bench) lifecycleRound(ctx context.Context, w *podWorkload, op lifecycleOp, s *opStats) error {
	leader, err := w.files.waitOne(ctx, time.Minute)
	if err != nil {
		return err
	}
	var oldLog func() string
	var waits map[string]time.Duration
	if os.Getenv("BENCH_TRACE") != "" {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		oldLog = w.follow(lctx, leader)
		waits = w.runDelays(ctx)
	}
	// At a random point of the leader's renew period (RETRY_PERIOD, 2 s for
	// both electors): a round's cycle (5 s for the app to stop, a second of
	// one status file) is close to three renews, which put every deletion
	// at the same point of the period, and users' deletions come at any.
	if err := sleep(ctx, rand.N(2*time.Second)); err != nil {
		return err
	}
	start := time.Now()
	if os.Getenv("BENCH_TRACE") != "" {
		go traceCPU(start)
	}
	from, err := op.do(ctx, w, leader)
	if err != nil {
		return fmt.Errorf("%s: %w", op.name, err)
	}
	next, err := w.files.waitOne(ctx, time.Minute)
	if err != nil {
		return err
	}
	took, gap, changes, overlaps := w.files.between(leader, start, time.Now())
	if os.Getenv("BENCH_TRACE") != "" {
		after := w.runDelays(ctx)
		for pod, d := range after {
			if b, ok := waits[pod]; ok {
				fmt.Fprintf(os.Stderr, "TRACE %s waited for a CPU %s during the round\n", pod, d-b)
			}
		}
		w.trace(ctx, start, took, map[string]string{leader: oldLog()}, next)
	}
	if took < 0 {
		return errors.New("no other pod's app saw a status file")
	}
	if !from.IsZero() {
		took -= from.Sub(start)
	}
	s.took, s.gap, s.changes = append(s.took, took), append(s.gap, gap), append(s.changes, changes)
	s.overlaps += overlaps
	if op.restore != nil {
		return op.restore(ctx, w)
	}
	return nil
}

// traceLog sets the sidecars' LOG_LEVEL to debug with BENCH_TRACE.
func traceLog() string {
	if os.Getenv("BENCH_TRACE") == "" {
		return ""
	}
	return `  - target: {kind: Deployment, name: myapp}
    patch: |
      - op: add
        path: /spec/template/spec/initContainers/0/env/-
        value: {name: LOG_LEVEL, value: debug}
`
}

// trace prints the old and the next leader's sidecar log lines from start
// to a second after the next leader's status file, to see where the time
// of a round went (BENCH_TRACE).
func (w *podWorkload) trace(ctx context.Context, start time.Time, took time.Duration, logs map[string]string, next string) {
	fmt.Fprintf(os.Stderr, "TRACE start=%s file=+%s\n", start.UTC().Format("15:04:05.000000"), took)
	b, err := w.b.cp.Admin.CoreV1().Pods(w.ns).GetLogs(next, &corev1.PodLogOptions{Container: testcluster.SidecarContainer}).DoRaw(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "TRACE %s: no log: %v\n", next, err)
	}
	logs[next] = string(b)
	for pod, log := range logs {
		for _, l := range strings.Split(log, "\n") {
			// The sidecar's text log: time=RFC 3339 first.
			stamp, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
			at, err := time.Parse(time.RFC3339Nano, stamp)
			if err != nil || at.Before(start.Add(-100*time.Millisecond)) || at.After(start.Add(took+time.Second)) {
				continue
			}
			fmt.Fprintf(os.Stderr, "TRACE %s +%s %s\n", pod, at.Sub(start).Round(100*time.Microsecond), l)
		}
	}
}

// traceCPU prints which programs used the machine's CPUs in the 150 ms
// after start, from each thread's /proc/PID/task/TID/stat, summed by the
// thread's name (BENCH_TRACE). Reading them costs the bench's own CPU.
func traceCPU(start time.Time) {
	type thread struct {
		comm  string
		ticks int64
	}
	cpu := func() map[string]thread {
		m := map[string]thread{}
		stats, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/stat")
		for _, f := range stats {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			i, j := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
			if i < 0 || j < i || j+2 > len(b) {
				continue
			}
			fields := strings.Fields(string(b[j+2:]))
			if len(fields) < 13 {
				continue
			}
			var ut, st int64
			fmt.Sscan(fields[11], &ut)
			fmt.Sscan(fields[12], &st)
			m[f] = thread{comm: string(b[i+1 : j]), ticks: ut + st}
		}
		return m
	}
	before := cpu()
	time.Sleep(150*time.Millisecond - time.Since(start))
	after := cpu()
	byComm := map[string]int64{}
	var total int64
	for f, t := range after {
		if b, ok := before[f]; ok && t.ticks > b.ticks {
			// A kernel worker's name says what it works on now.
			comm := t.comm
			if strings.HasPrefix(comm, "kworker/") {
				comm = "kworker"
			}
			byComm[comm] += t.ticks - b.ticks
			total += t.ticks - b.ticks
		}
	}
	comms := slices.Collect(maps.Keys(byComm))
	slices.SortFunc(comms, func(a, b string) int { return int(byComm[b] - byComm[a]) })
	var top []string
	for _, c := range comms[:min(len(comms), 12)] {
		top = append(top, fmt.Sprintf("%s=%dms", c, byComm[c]*10))
	}
	fmt.Fprintf(os.Stderr, "TRACE cpu in the first 150 ms (300 ms on 2 cores; in 10 ms ticks): total=%dms %s\n", total*10, strings.Join(top, " "))
}

// runDelays reads each sidecar's time spent waiting for a CPU so far
// (/proc/PID/schedstat), by pod.
func (w *podWorkload) runDelays(ctx context.Context) map[string]time.Duration {
	out := map[string]time.Duration{}
	l, err := w.b.cp.Admin.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, p := range l.Items {
		for _, c := range p.Status.InitContainerStatuses {
			if c.Name != testcluster.SidecarContainer || c.ContainerID == "" {
				continue
			}
			pids, err := w.node.ContainerPIDs(c.ContainerID)
			if err != nil {
				continue
			}
			for _, pid := range pids {
				tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
				for _, t := range tasks {
					b, err := os.ReadFile(t)
					if err != nil {
						continue
					}
					var run, wait int64
					fmt.Sscan(string(b), &run, &wait)
					out[p.Name] += time.Duration(wait)
				}
			}
		}
	}
	return out
}

// follow streams pod's sidecar log from now until ctx ends or the
// container stops, and returns what came so far.
func (w *podWorkload) follow(ctx context.Context, pod string) func() string {
	var mu sync.Mutex
	var buf strings.Builder
	since := int64(1)
	rc, err := w.b.cp.Admin.CoreV1().Pods(w.ns).GetLogs(pod, &corev1.PodLogOptions{Container: testcluster.SidecarContainer, Follow: true, SinceSeconds: &since}).Stream(ctx)
	if err != nil {
		return func() string { return "" }
	}
	go func() {
		defer rc.Close()
		b := make([]byte, 4096)
		for {
			n, err := rc.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

func deleteLeader(ctx context.Context, w *podWorkload, leader string) (time.Time, error) {
	if err := w.b.cp.Admin.CoreV1().Pods(w.ns).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		return time.Time{}, err
	}
	_, err := w.b.cp.WaitExamplePods(ctx, w.ns, 3, 2*time.Minute)
	return time.Time{}, err
}

func evictLeader(ctx context.Context, w *podWorkload, leader string) (time.Time, error) {
	if err := w.b.cp.WaitDisruptionsAllowed(ctx, w.ns, 1, time.Minute); err != nil {
		return time.Time{}, err
	}
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: leader, Namespace: w.ns}}
	if err := w.b.cp.Admin.CoreV1().Pods(w.ns).EvictV1(ctx, ev); err != nil {
		return time.Time{}, err
	}
	_, err := w.b.cp.WaitExamplePods(ctx, w.ns, 3, 2*time.Minute)
	return time.Time{}, err
}

// scaleDownPastLeader gives the leader the lowest deletion cost, so that
// the ReplicaSet controller removes it, and scales to 1 (the op's restore
// scales back to 3, after the window).
func scaleDownPastLeader(ctx context.Context, w *podWorkload, leader string) (time.Time, error) {
	if err := w.b.cp.RemoveFirstOnScaleDown(ctx, w.ns, leader); err != nil {
		return time.Time{}, err
	}
	if err := w.b.cp.ScaleExample(ctx, w.ns, 1); err != nil {
		return time.Time{}, err
	}
	_, err := w.b.cp.WaitExamplePods(ctx, w.ns, 1, 2*time.Minute)
	return time.Time{}, err
}

func scaleBack(ctx context.Context, w *podWorkload) error {
	if err := w.b.cp.ScaleExample(ctx, w.ns, 3); err != nil {
		return err
	}
	_, err := w.b.cp.WaitExamplePods(ctx, w.ns, 3, 2*time.Minute)
	return err
}

func rolloutRestart(ctx context.Context, w *podWorkload, leader string) (time.Time, error) {
	pods := w.b.cp.Admin.CoreV1().Pods(w.ns)
	old, err := pods.Get(ctx, leader, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, err
	}
	// When the old leader's deletion is seen: the rollout deletes it once
	// a new pod is Ready.
	watch, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + leader, ResourceVersion: old.ResourceVersion})
	if err != nil {
		return time.Time{}, err
	}
	defer watch.Stop()
	deleted := make(chan time.Time, 1)
	go func() {
		for ev := range watch.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.DeletionTimestamp != nil {
				deleted <- time.Now()
				return
			}
		}
	}()
	if err := w.b.cp.RestartExampleRollout(ctx, w.ns); err != nil {
		return time.Time{}, err
	}
	if err := w.b.cp.WaitRolledOut(ctx, w.ns, old.Labels["pod-template-hash"], 3, 3*time.Minute); err != nil {
		return time.Time{}, err
	}
	select {
	case at := <-deleted:
		return at, nil
	default:
		return time.Time{}, errors.New("the rollout ended, and no watch saw the old leader's deletion")
	}
}

// fileTimeline is every change of the set of pods whose app sees a status
// file, sampled on the node every 2 ms.
type fileTimeline struct {
	mu      sync.Mutex
	changes []fileChange
}

type fileChange struct {
	at   time.Time
	pods []string // sorted
}

func watchFiles(ctx context.Context, node *testcluster.Node, ns string) *fileTimeline {
	t := &fileTimeline{}
	files := node.StatusFiles(ctx, ns)
	go func() {
		for ctx.Err() == nil {
			seen := testcluster.Present(files())
			slices.Sort(seen)
			t.mu.Lock()
			if n := len(t.changes); n == 0 || !slices.Equal(t.changes[n-1].pods, seen) {
				t.changes = append(t.changes, fileChange{at: time.Now(), pods: seen})
			}
			t.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return t
}

// waitOne waits until exactly one app sees a status file, for at least a
// second, and returns its pod.
func (t *fileTimeline) waitOne(ctx context.Context, timeout time.Duration) (string, error) {
	var one string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		n := len(t.changes)
		if n == 0 || len(t.changes[n-1].pods) != 1 || time.Since(t.changes[n-1].at) < time.Second {
			return false, nil
		}
		one = t.changes[n-1].pods[0]
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("not one status file for a second within %s", timeout)
	}
	return one, nil
}

// between reads the timeline from start to end, which began with old's
// file: when another pod's app first saw one (-1: never), the longest time
// no app saw one, how often the file moved to another pod, and how many
// changes showed two files.
func (t *fileTimeline) between(old string, start, end time.Time) (took, gap time.Duration, moves, overlaps int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	took = -1
	holder, emptySince := old, time.Time{}
	for _, c := range t.changes {
		if c.at.Before(start) || c.at.After(end) {
			continue
		}
		switch len(c.pods) {
		case 0:
			if emptySince.IsZero() {
				emptySince = c.at
			}
			continue
		case 1:
			if c.pods[0] != holder {
				moves++
				holder = c.pods[0]
			}
		default:
			overlaps++
		}
		if !emptySince.IsZero() {
			gap = max(gap, c.at.Sub(emptySince))
			emptySince = time.Time{}
		}
		if took < 0 && slices.ContainsFunc(c.pods, func(p string) bool { return p != old }) {
			took = c.at.Sub(start)
		}
	}
	return took, gap, moves, overlaps
}

// markdown prints the lifecycle table: a row per op and measure, a column
// per elector.
func (r *lifecycleResult) markdown(w io.Writer) {
	fmt.Fprintf(w, "\nLifecycle in real pods: deploy/example.yaml (3 replicas) with an app that takes 5 s to stop on SIGTERM, each elector as the native sidecar, %d rounds each (BENCH_LIFECYCLE_ROUNDS), each call at a random point (0-2 s) of the leader's renew period:\n\n", r.rounds)
	if len(r.electors) == 0 {
		fmt.Fprintf(w, "%s\n", r.na)
		return
	}
	fmt.Fprintf(w, "| measure |")
	for _, e := range r.electors {
		fmt.Fprintf(w, " %s |", e)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(r.electors)))
	for _, op := range lifecycleOps {
		cell := func(f func(*opStats) string) func(*opStats) string {
			return func(s *opStats) string {
				if s == nil {
					return "-"
				}
				if s.err != nil && len(s.took) == 0 {
					return "failed: " + s.err.Error()
				}
				return f(s)
			}
		}
		for _, m := range []struct {
			label string
			f     func(*opStats) string
		}{
			{op.what + ": the call to the next leader's status file, p50 / max", func(s *opStats) string { return p50max(s.took) }},
			{op.what + ": leader changes per round, min-max", func(s *opStats) string { return minMax(s.changes) }},
			{op.what + ": longest time no app saw a status file, p50 / max", func(s *opStats) string { return p50max(s.gap) }},
			{op.what + ": samples with two status files", func(s *opStats) string { return fmt.Sprint(s.overlaps) }},
		} {
			fmt.Fprintf(w, "| %s |", m.label)
			for _, e := range r.electors {
				fmt.Fprintf(w, " %s |", cell(m.f)(r.stats[e][op.name]))
			}
			fmt.Fprintln(w)
		}
	}
	if r.na != "" {
		fmt.Fprintf(w, "\n%s\n", r.na)
	}
}

func minMax(xs []int) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d-%d", slices.Min(xs), slices.Max(xs))
}
