package chaos

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// The invariants, as failures name them.
const (
	inv1        = "1 (never two status files)"
	inv2        = "2 (the Service never names two pods)"
	inv3        = "3 (one leader, labelled and routed, within LEASE_DURATION+1s of healing)"
	inv3release = "3 (SIGTERM during a step-down still releases the Lease)"
	inv3offer   = "3 (an answered take-over offer that wrote nothing is followed by a release)"
	inv4        = "4 (no crash or unexpected exit; goroutines and fds flat)"
	inv5        = "5 (no hot loop)"
	inv6        = "6 (under a stream flood: RSS under the example's memory limit, probes answered)"
	inv7        = "7 (the gatekeeper's command, forks and all, runs on one replica at a time and never outlives its sidecar)"
	inv8        = "8 (a leader whose pod is being deleted hands the Lease to a live peer at once, not at its SIGTERM)"
)

// The hot-loop bounds (invariant 5), per sidecar, through its proxy.
//
// Rate: a sidecar runs at most five loops that each send about one request
// per RETRY_PERIOD while their request fails (renew or read the Lease, list
// and watch the Lease, list and watch the peer pods), so in any rateWindow
// at most 5 x rateWindow / RETRY_PERIOD requests, and as many connections.
// That stops any loop without back-off that client-go's own limiter (5/s,
// burst 10) lets through.
//
// Burst: that limiter throttles a retry loop to about the rate of renewing
// (a LIST+WATCH loop without a back-off runs at 14 requests/s, one
// retrying once per RETRY_PERIOD about as often as renewing), but first spends its burst: nine
// watches within 80ms. A watch retried with a back-off from RETRY_PERIOD/4
// starts at most three times within one RETRY_PERIOD, two watches (the
// Lease, and as leader the peer pods) six.
const (
	maxRequestsPerWindow = int64(5 * rateWindow / retryPeriod)
	maxConnsPerWindow    = maxRequestsPerWindow
	maxWatchesPerRetry   = 6
)

// Flatness (invariant 4): growth allowed between the median of a process's
// first three samples and of its last three.
const (
	fdSlack        = 5
	goroutineSlack = 10
	threadSlack    = 6
)

// controllers are what kube-controller-manager runs for the suite.
const controllers = "endpointslice"

// quiet is how long a round goes on after it healed, so that late effects
// (a late label patch, a second step-down) count against it.
const quiet = 2 * retryPeriod

// round is one fault and what the recorders saw while it lasted.
type round struct {
	n      int
	fault  string
	target *workload
	leader *replica
	rng    *rand.Rand
	notes  []string
	start  time.Time
	healed time.Time

	healTook        time.Duration
	overlaps        int
	overlap         time.Duration
	frozenWindow    time.Duration
	thawRemoval     time.Duration // longest time from SIGCONT to the removal of the file
	twoPodSamples   int
	twoPodTime      time.Duration
	twoLabelSamples int
	pollTwo         int
	maxRequests     map[*replica]int64
	maxWatches      map[*replica]int64
	maxConns        map[*replica]int64
	watchBurst      map[*replica]int // most watches started within one RETRY_PERIOD
}

func (r *round) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// follower picks one of the target workload's other replicas.
func (r *round) follower() *replica {
	var out []*replica
	for _, x := range r.target.replicas {
		if x != r.leader {
			out = append(out, x)
		}
	}
	return out[r.rng.IntN(len(out))]
}

func (r *round) String() string {
	s := fmt.Sprintf("round %d (%s", r.n, r.fault)
	if r.target != nil {
		s += fmt.Sprintf(" on %s, leader %s", r.target.name, r.leader.pod)
	}
	if len(r.notes) > 0 {
		s += "; " + strings.Join(r.notes, ", ")
	}
	return s + ")"
}

type violation struct {
	round     *round
	invariant string
	detail    string
	pods      []string
	excerpt   string
}

// chaosRun holds the rounds and the violations of one run.
type chaosRun struct {
	t *testing.T
	s settings

	mu         sync.Mutex
	cur        *round
	rounds     []*round
	violations []*violation
	usage      map[*proc][]usage
}

func (c *chaosRun) begin(r *round) {
	r.maxRequests, r.maxWatches, r.maxConns = map[*replica]int64{}, map[*replica]int64{}, map[*replica]int64{}
	r.watchBurst = map[*replica]int{}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = r
	c.rounds = append(c.rounds, r)
}

func (c *chaosRun) current() *round {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *chaosRun) violate(r *round, invariant, detail string, pods ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violateLocked(r, invariant, detail, pods...)
}

func (c *chaosRun) violateLocked(r *round, invariant, detail string, pods ...string) {
	c.violations = append(c.violations, &violation{round: r, invariant: invariant, detail: detail, pods: slices.Clone(pods)})
}

// count applies f to the current round.
func (c *chaosRun) count(f func(r *round)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		f(c.cur)
	}
}

func (c *chaosRun) addOverlap(e *episode) {
	c.count(func(r *round) {
		if e.frozen {
			r.frozenWindow += e.duration()
		} else {
			r.overlaps++
			r.overlap += e.duration()
		}
	})
}

func (c *chaosRun) addThawRemoval(_ string, d time.Duration) {
	c.count(func(r *round) { r.thawRemoval = max(r.thawRemoval, d) })
}

func (c *chaosRun) addTwoPodTime(e *episode) {
	c.count(func(r *round) { r.twoPodTime += e.duration() })
}

func (c *chaosRun) addRate(rep *replica, w testcluster.Counts) {
	c.count(func(r *round) {
		r.maxRequests[rep] = max(r.maxRequests[rep], w.Requests+w.Watches)
		r.maxWatches[rep] = max(r.maxWatches[rep], w.Watches)
		r.maxConns[rep] = max(r.maxConns[rep], w.Conns)
	})
}

func (c *chaosRun) roundViolations(r *round) []*violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*violation
	for _, v := range c.violations {
		if v.round == r {
			out = append(out, v)
		}
	}
	return out
}

// TestChaos runs the rounds; see the package doc.
func TestChaos(t *testing.T) {
	s, err := loadSettings(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	replay := fmt.Sprintf("CHAOS_SEED=%d CHAOS_ROUNDS=%d", s.seed, s.rounds)
	if s.faults != "" {
		replay += " CHAOS_FAULTS=" + s.faults
	}
	t.Logf("chaos: seed %d, %d rounds; replay with %s", s.seed, s.rounds, replay)
	t.Logf("timings %s/%s/%s; heal bound %s; sidecars run as uid %d", leaseDuration, renewDeadline, retryPeriod, healBound, sidecarUID)
	ctx := t.Context()
	if err := cp.StartControllerManager(ctx, controllers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.StopControllerManager(5 * time.Second) })
	run := &chaosRun{t: t, s: s, usage: map[*proc][]usage{}}
	t.Cleanup(run.finish) // last: after the sidecars were stopped
	run.begin(&round{n: 0, fault: "startup"})
	wd := newWorld(t, run)
	if _, _, detail := wd.waitSettled(ctx, time.Now(), 60*time.Second); detail != "" {
		r0 := run.current()
		run.violate(r0, inv3, "no single leader, labelled and routed, 60s after the start: "+detail, wd.podNames()...)
		wd.finishRound(r0)
		t.FailNow()
	}
	wd.sampleUsage()
	wd.finishRound(run.current())

	rng := rand.New(rand.NewPCG(uint64(s.seed), 0x6368616f73))
	pool := s.pool()
	for n := 1; n <= s.rounds; n++ {
		f := pool[rng.IntN(len(pool))]
		r := &round{n: n, fault: f.name, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(n)))}
		_, leaders, detail := wd.waitSettled(ctx, time.Now(), healBound)
		if detail != "" {
			prev := run.current()
			run.violate(prev, inv3, "settled, then lost its single leader without a new fault: "+detail)
			if _, leaders, detail = wd.waitSettled(ctx, time.Now(), 60*time.Second); detail != "" {
				wd.finishRound(prev)
				t.Fatalf("seed %d, round %d, fault %s: no single leader for 60s more: %s", s.seed, prev.n, prev.fault, detail)
			}
		}
		r.target = wd.workloads[r.rng.IntN(len(wd.workloads))]
		r.leader = leaders[r.target]
		r.start = time.Now()
		run.begin(r)
		if err := f.do(ctx, wd, r); err != nil {
			t.Fatalf("seed %d, %s: the harness could not inject the fault: %v", s.seed, r, err)
		}
		took, _, detail := wd.waitSettled(ctx, r.healed, healBound)
		if detail != "" {
			run.violate(r, inv3, fmt.Sprintf("healed at %s; %s later still: %s", r.healed.Format("15:04:05.000"), healBound, detail), podsOf(r.target)...)
			if took, _, detail = wd.waitSettled(ctx, r.healed, 60*time.Second); detail != "" {
				wd.finishRound(r)
				t.Fatalf("seed %d, %s: no single leader 60s after healing: %s", s.seed, r, detail)
			}
		}
		r.healTook = took
		if err := sleep(ctx, quiet); err != nil {
			t.Fatal(err)
		}
		wd.sampleUsage()
		wd.finishRound(r)
		if err := wd.restoreAll(ctx); err != nil {
			t.Fatalf("seed %d, %s: restore: %v", s.seed, r, err)
		}
	}
	wd.checkUsage()
}

func podsOf(w *workload) []string {
	var out []string
	for _, r := range w.replicas {
		out = append(out, r.pod)
	}
	return out
}

// finishRound checks the request rates of r, attaches log excerpts to its
// violations and logs one line about it.
func (wd *world) finishRound(r *round) {
	run := wd.run
	run.mu.Lock()
	var top, topWatches int64
	var topPod string
	for _, rep := range wd.replicas {
		req, watches, conns := r.maxRequests[rep], r.maxWatches[rep], r.maxConns[rep]
		if req > top {
			top, topPod = req, rep.pod
		}
		topWatches = max(topWatches, watches)
		if req > maxRequestsPerWindow || conns > maxConnsPerWindow {
			run.violateLocked(r, inv5, fmt.Sprintf("%s sent %d requests (%d of them watches) and opened %d connections within %s (bounds %d and %d)",
				rep.pod, req, watches, conns, rateWindow, maxRequestsPerWindow, maxConnsPerWindow), rep.pod)
		}
		if b := r.watchBurst[rep]; b > maxWatchesPerRetry {
			run.violateLocked(r, inv5, fmt.Sprintf("%s started %d watches within one RETRY_PERIOD (%s; bound %d): a retry without back-off",
				rep.pod, b, retryPeriod, maxWatchesPerRetry), rep.pod)
		}
	}
	run.mu.Unlock()
	vs := run.roundViolations(r)
	for _, v := range vs {
		if v.excerpt != "" {
			continue
		}
		var b strings.Builder
		if r.target != nil {
			for _, e := range wd.api.leases.between(r.target.lease, r.start.Add(-time.Second), time.Now()) {
				fmt.Fprintf(&b, "  lease: %s\n", e)
			}
		}
		b.WriteString(wd.excerpt(v.pods, 30))
		v.excerpt = b.String()
	}
	healed := "-"
	if !r.healed.IsZero() {
		healed = r.healTook.Round(time.Millisecond).String()
	}
	line := fmt.Sprintf("%s: healed in %s; overlap %d (%s); frozen window %s; two-pod samples %d; busiest %s %d req/%s, most watches %d",
		r, healed, r.overlaps, r.overlap.Round(time.Microsecond), r.frozenWindow.Round(time.Millisecond), r.twoPodSamples, topPod, top, rateWindow, topWatches)
	if r.twoLabelSamples > 0 {
		line += fmt.Sprintf("; two role=leader labels %d", r.twoLabelSamples)
	}
	if len(vs) > 0 {
		line += fmt.Sprintf("; %d VIOLATION(S)", len(vs))
	}
	wd.t.Log(line)
}

// sampleUsage records fds and goroutines of every running sidecar.
func (wd *world) sampleUsage() {
	for _, r := range wd.replicas {
		p := r.current()
		if p == nil || p.exited() {
			continue
		}
		u, err := p.usage()
		if err != nil {
			continue // it exited meanwhile
		}
		wd.run.mu.Lock()
		wd.run.usage[p] = append(wd.run.usage[p], u)
		wd.run.mu.Unlock()
	}
}

func median3(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// checkUsage: over its life, no process gained more than the slack of open
// fds and goroutines (threads where /status has no goroutines).
func (wd *world) checkUsage() {
	run := wd.run
	run.mu.Lock()
	defer run.mu.Unlock()
	last := run.rounds[len(run.rounds)-1]
	fallback := false
	for p, all := range run.usage {
		for _, leader := range []bool{false, true} {
			var us []usage
			for _, u := range all {
				if u.leader == leader {
					us = append(us, u)
				}
			}
			if len(us) < 6 {
				continue
			}
			role := "as follower"
			if leader {
				role = "as leader"
			}
			fds := func(u usage) int { return u.fds }
			gor := func(u usage) int { return u.goroutines }
			slack, what := goroutineSlack, "goroutines"
			if !us[0].fromStatus {
				gor, slack, what, fallback = func(u usage) int { return u.threads }, threadSlack, "threads", true
			}
			head, tail := us[:3], us[len(us)-3:]
			var line []string
			for _, m := range []struct {
				what  string
				of    func(usage) int
				slack int
			}{{"open fds", fds, fdSlack}, {what, gor, slack}} {
				a, b := median3(mapInts(head, m.of)), median3(mapInts(tail, m.of))
				line = append(line, fmt.Sprintf("%s %d -> %d", m.what, a, b))
				if b-a > m.slack {
					run.violateLocked(last, inv4, fmt.Sprintf("%s (run %d) %s: %s grew from %d to %d over %d samples (slack %d)", p.r.pod, p.run, role, m.what, a, b, len(us), m.slack), p.r.pod)
				}
			}
			wd.t.Logf("%s (run %d) %s, %d samples: %s", p.r.pod, p.run, role, len(us), strings.Join(line, ", "))
		}
	}
	if fallback {
		wd.t.Log(`/status has no "goroutines" field: counted threads from /proc/<pid>/status instead`)
	}
}

func mapInts(us []usage, f func(usage) int) []int {
	out := make([]int, len(us))
	for i, u := range us {
		out[i] = f(u)
	}
	return out
}

// finish prints the table and fails the test for each violation.
func (c *chaosRun) finish() {
	c.mu.Lock()
	rounds := slices.Clone(c.rounds)
	vs := slices.Clone(c.violations)
	c.mu.Unlock()
	c.t.Log("\n" + table(rounds))
	for _, v := range vs {
		replay := fmt.Sprintf("CHAOS_SEED=%d CHAOS_ROUNDS=%d", c.s.seed, c.s.rounds)
		if c.s.faults != "" {
			replay += " CHAOS_FAULTS=" + c.s.faults
		}
		c.t.Errorf("seed %d, %s, invariant %s violated: %s\n%s\nreplay: %s", c.s.seed, v.round, v.invariant, v.detail, v.excerpt, replay)
	}
}

// table summarizes the rounds per fault.
func table(rounds []*round) string {
	type agg struct {
		rounds, overlaps, twoPod, twoLabel int
		overlap, frozen, thaw              time.Duration
		heals                              []time.Duration
		maxReq                             int64
		maxBurst                           int
	}
	byFault := map[string]*agg{}
	var total agg
	var names []string
	for _, r := range rounds {
		if r.n == 0 {
			continue
		}
		a := byFault[r.fault]
		if a == nil {
			a = &agg{}
			byFault[r.fault] = a
			names = append(names, r.fault)
		}
		for _, x := range []*agg{a, &total} {
			x.rounds++
			x.overlaps += r.overlaps
			x.overlap += r.overlap
			x.frozen += r.frozenWindow
			x.thaw = max(x.thaw, r.thawRemoval)
			x.twoPod += r.twoPodSamples
			x.twoLabel += r.twoLabelSamples
			if !r.healed.IsZero() {
				x.heals = append(x.heals, r.healTook)
			}
			for _, v := range r.maxRequests {
				x.maxReq = max(x.maxReq, v)
			}
			for _, v := range r.watchBurst {
				x.maxBurst = max(x.maxBurst, v)
			}
		}
	}
	slices.Sort(names)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\trounds\toverlap\tfrozen window\tSIGCONT to removal (max)\ttwo-pod samples\ttwo-label samples\thealed p50\thealed p99\tmax req/"+rateWindow.String()+"\tmax watches/"+retryPeriod.String())
	row := func(name string, a *agg) {
		fmt.Fprintf(tw, "%s\t%d\t%d ms (%d)\t%d ms\t%s\t%d\t%d\t%s\t%s\t%d\t%d\n", name, a.rounds,
			a.overlap.Milliseconds(), a.overlaps, a.frozen.Milliseconds(), a.thaw.Round(time.Millisecond),
			a.twoPod, a.twoLabel, percentile(a.heals, 0.5), percentile(a.heals, 0.99), a.maxReq, a.maxBurst)
	}
	for _, n := range names {
		row(n, byFault[n])
	}
	row("all", &total)
	_ = tw.Flush()
	return b.String()
}

// percentile is the nearest-rank percentile, "-" without samples.
func percentile(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)].Round(time.Millisecond).String()
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want string
	}{
		{nil, 0.5, "-"},
		{ms(7), 0.99, "7ms"},
		{ms(4, 1, 3, 2), 0.5, "2ms"},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, "10ms"},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.5, "5ms"},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %s, want %s", tc.in, tc.p, got, tc.want)
		}
	}
}

// TestFaultSequenceFollowsTheSeed: a seed replays the same faults, targets
// and parameters, whatever a fault draws from its own generator.
func TestFaultSequenceFollowsTheSeed(t *testing.T) {
	seq := func(seed int64) []string {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x6368616f73))
		var out []string
		for n := 1; n <= 50; n++ {
			f := faults[rng.IntN(len(faults))]
			rr := rand.New(rand.NewPCG(rng.Uint64(), uint64(n)))
			out = append(out, fmt.Sprintf("%s/%d/%d", f.name, rr.IntN(2), between(rr, 0, time.Second)))
		}
		return out
	}
	if a, b := seq(42), seq(42); !slices.Equal(a, b) {
		t.Errorf("seed 42 gave two sequences:\n%v\n%v", a, b)
	}
	if a, b := seq(42), seq(43); slices.Equal(a, b) {
		t.Errorf("seeds 42 and 43 gave the same sequence")
	}
	seen := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 0x6368616f73))
	for range 2000 {
		seen[faults[rng.IntN(len(faults))].name] = true
		rng.Uint64()
	}
	if len(seen) != len(faults) {
		t.Errorf("2000 draws picked %d of %d faults", len(seen), len(faults))
	}
}

func TestTableSummarizesPerFault(t *testing.T) {
	rep := &replica{pod: "alpha-0"}
	mk := func(n int, fault string, heal time.Duration, overlaps int, overlap time.Duration) *round {
		return &round{n: n, fault: fault, healed: time.Unix(1, 0), healTook: heal, overlaps: overlaps, overlap: overlap,
			maxRequests: map[*replica]int64{rep: int64(10 * n)}, watchBurst: map[*replica]int{rep: n}}
	}
	out := table([]*round{
		{n: 0, fault: "startup"},
		mk(1, "sigkill-leader", 2*time.Second, 0, 0),
		mk(2, "sigkill-leader", time.Second, 0, 0),
		mk(3, "delete-lease", 3*time.Second, 1, 7*time.Millisecond),
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want a header, two faults and all:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"delete-lease", "1", "7 ms (1)", "3s", "3s", "30", "3"},
		{"sigkill-leader", "2", "0 ms (0)", "1s", "2s", "20", "2"},
		{"all", "3", "7 ms (1)", "2s", "3s", "30", "3"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %q lacks %q", lines[i+1], w)
			}
		}
		if !strings.HasPrefix(lines[i+1], want[0]) {
			t.Errorf("row %d = %q, want fault %s", i+1, lines[i+1], want[0])
		}
	}
}
