package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestLoadSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    []int
		rounds  int
		crash   int
		window  time.Duration
		pods    int
		wantErr string
	}{
		{name: "defaults", want: []int{3, 50, 200}, rounds: 20, crash: 5, window: time.Minute, pods: 5},
		{name: "quick", env: map[string]string{"BENCH_REPLICAS": "3", "BENCH_ROUNDS": "3", "BENCH_CRASH_ROUNDS": "1", "BENCH_WINDOW": "10s", "BENCH_POD_ROUNDS": "2"},
			want: []int{3}, rounds: 3, crash: 1, window: 10 * time.Second, pods: 2},
		{name: "no real pods", env: map[string]string{"BENCH_POD_ROUNDS": "0"}, want: []int{3, 50, 200}, rounds: 20, crash: 5, window: time.Minute, pods: 0},
		{name: "spaces and repeats", env: map[string]string{"BENCH_REPLICAS": " 50, 3,50"}, want: []int{50, 3}, rounds: 20, crash: 5, window: time.Minute, pods: 5},
		{name: "no crash rounds, ours only", env: map[string]string{"BENCH_CRASH_ROUNDS": "0", "BENCH_ELECTORS": "ours"}, want: []int{3, 50, 200}, rounds: 20, crash: 0, window: time.Minute, pods: 5},
		{name: "bad rounds", env: map[string]string{"BENCH_ROUNDS": "-1"}, wantErr: `BENCH_ROUNDS="-1"`},
		{name: "bad window", env: map[string]string{"BENCH_WINDOW": "soon"}, wantErr: `BENCH_WINDOW="soon"`},
		{name: "bad electors", env: map[string]string{"BENCH_ELECTORS": "mine"}, wantErr: `BENCH_ELECTORS="mine"`},
		{name: "one replica", env: map[string]string{"BENCH_REPLICAS": "1"}, wantErr: `BENCH_REPLICAS="1"`},
		{name: "not a number", env: map[string]string{"BENCH_REPLICAS": "3,many"}, wantErr: `BENCH_REPLICAS="3,many"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := loadSettings(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.replicas, tc.want) || s.rounds != tc.rounds || s.crashRounds != tc.crash || s.window != tc.window || s.podRounds != tc.pods {
				t.Errorf("got replicas %v rounds %d crash %d window %s pods %d, want %v %d %d %s %d", s.replicas, s.rounds, s.crashRounds, s.window, s.podRounds, tc.want, tc.rounds, tc.crash, tc.window, tc.pods)
			}
			if s.out == "" {
				t.Error("no output directory")
			}
		})
	}
}

func TestWindowFor(t *testing.T) {
	s := settings{window: time.Minute}
	for n, want := range map[int]time.Duration{2: time.Minute, 3: time.Minute, 50: 30 * time.Second, 200: 20 * time.Second} {
		if got := s.windowFor(n); got != want {
			t.Errorf("windowFor(%d) = %s, want %s", n, got, want)
		}
	}
	if got := (settings{window: 10 * time.Second}).windowFor(200); got != 10*time.Second {
		t.Errorf("a short window at N=200 = %s, want the 10s floor", got)
	}
}

// An excerpt of kube-apiserver v1.37's /metrics.
const apiserverMetrics = `# HELP apiserver_request_total Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="404",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 30
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 99
# HELP apiserver_watch_events_total Number of events sent in watch clients
# TYPE apiserver_watch_events_total counter
apiserver_watch_events_total{group="coordination.k8s.io",resource="leases",version="v1"} 120
apiserver_watch_events_total{group="",resource="pods",version="v1"} 5
`

func TestLeaseTraffic(t *testing.T) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(apiserverMetrics))
	if err != nil {
		t.Fatal(err)
	}
	got, err := leaseTrafficOf(families)
	if err != nil {
		t.Fatal(err)
	}
	if got.requests["GET"] != 9 || got.requests["PUT"] != 30 || len(got.requests) != 2 || got.watchEvents != 120 {
		t.Fatalf("got %+v, want GET 9, PUT 30, 120 watch events", got)
	}
	before := leaseTraffic{requests: map[string]float64{"GET": 3, "PUT": 10}, watchEvents: 40}
	rate := got.minus(before).perMinute(30 * time.Second)
	if rate.requests["GET"] != 12 || rate.requests["PUT"] != 40 || rate.watchEvents != 160 {
		t.Errorf("per minute = %+v, want GET 12, PUT 40, 160 watch events", rate)
	}
	if _, err := leaseTrafficOf(nil); err == nil {
		t.Error("no error for /metrics without the counters")
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		ds   []time.Duration
		p    int
		want string
	}{
		{nil, 50, "-"},
		{ms(30, 10, 20), 50, "20.0 ms"},
		{ms(30, 10, 20), 99, "30.0 ms"},
		{ms(30, 10, 20), 100, "30.0 ms"},
		{ms(1500), 50, "1.50 s"},
		{ms(-3), 50, "-3.0 ms"},
	} {
		if got := pct(tc.ds, tc.p); got != tc.want {
			t.Errorf("pct(%v, %d) = %q, want %q", tc.ds, tc.p, got, tc.want)
		}
	}
}

func TestReportWritesTableAndChart(t *testing.T) {
	dir := t.TempDir()
	ms := time.Millisecond
	r := &report{
		header:   "leader-elector benchmark, test",
		settings: settings{replicas: []int{3, 200}, rounds: 2, crashRounds: 1, window: time.Minute},
		idle:     leaseTraffic{requests: map[string]float64{"PUT": 6}, watchEvents: 6},
	}
	for _, n := range []int{3, 200} {
		r.scale = append(r.scale,
			&scaleResult{n: n, elector: "leader-elector", window: time.Minute, handover: []time.Duration{10 * ms, 12 * ms},
				crash: []time.Duration{40 * ms}, restart: []time.Duration{14 * time.Second}, resignNA: "n/a (error: exit status 127|x)",
				traffic: leaseTraffic{requests: map[string]float64{"PUT": 30, "DELETE": 0}, watchEvents: 120}},
			&scaleResult{n: n, elector: "client-go elector", window: time.Minute, handover: []time.Duration{900 * ms, 2 * time.Second},
				crash: []time.Duration{3 * time.Second}, restart: []time.Duration{70 * ms}, resignNA: "n/a",
				traffic: leaseTraffic{requests: map[string]float64{"PUT": 30, "GET": 60}, watchEvents: 30}})
	}
	r.lifecycle = &lifecycleResult{rounds: 2, electors: []string{"leader-elector", "client-go elector"}, stats: map[string]map[string]*opStats{
		"leader-elector":    {"delete": {took: []time.Duration{50 * ms, 70 * ms}, changes: []int{1, 1}}},
		"client-go elector": {"delete": {took: []time.Duration{6 * time.Second, 7 * time.Second}, changes: []int{1, 1}}},
	}}
	var out strings.Builder
	if err := r.write(&out, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| measure | N=3 leader-elector | N=3 client-go elector | N=200 leader-elector | N=200 client-go elector |",
		"| 10.0 ms / 12.0 ms | 900.0 ms / 2.00 s |",
		`n/a (error: exit status 127\|x)`,
		"| Lease requests/min, GET | 0.0 | 60.0 |",
		"![graceful handover",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "DELETE") {
		t.Errorf("results.md has a row for a verb no window used:\n%s", md)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "handover.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "client-go elector") {
		t.Errorf("handover.svg is no chart with a legend: %.200s", svg)
	}
	svg, err = os.ReadFile(filepath.Join(dir, "lifecycle.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "client-go elector") || !strings.Contains(string(svg), "delete") {
		t.Errorf("lifecycle.svg is no chart of both electors per operation: %.200s", svg)
	}
	if !strings.Contains(string(md), "(lifecycle.svg)") {
		t.Errorf("results.md does not show the lifecycle chart:\n%s", md)
	}
}

func TestLifecycleRoundsSetting(t *testing.T) {
	for env, want := range map[string]int{"": 10, "0": 0, "3": 3} {
		s, err := loadSettings(func(k string) string {
			if k == "BENCH_LIFECYCLE_ROUNDS" {
				return env
			}
			return ""
		})
		if err != nil || s.lifecycleRounds != want {
			t.Errorf("BENCH_LIFECYCLE_ROUNDS=%q: %d rounds (%v), want %d", env, s.lifecycleRounds, err, want)
		}
	}
	if _, err := loadSettings(func(k string) string { return map[string]string{"BENCH_LIFECYCLE_ROUNDS": "x"}[k] }); err == nil {
		t.Error(`BENCH_LIFECYCLE_ROUNDS="x" was accepted`)
	}
}

func TestFileTimelineBetween(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tl := &fileTimeline{changes: []fileChange{
		{at(-100), []string{"a"}},
		{at(30), nil},           // a stepped down
		{at(45), []string{"b"}}, // b leads: 45 ms after the call, 15 ms gap
		{at(900), nil},
		{at(905), []string{"c"}}, // moved again
		{at(2000), []string{"c", "d"}},
		{at(2001), []string{"c"}},
		{at(9000), nil}, // after the window
	}}
	took, gap, moves, overlaps := tl.between("a", t0, at(5000))
	if took != 45*time.Millisecond || gap != 15*time.Millisecond || moves != 2 || overlaps != 1 {
		t.Errorf("between = took %s, gap %s, moves %d, overlaps %d; want 45ms, 15ms, 2, 1", took, gap, moves, overlaps)
	}
	if took, _, _, _ := tl.between("a", at(-200), at(20)); took != -1 {
		t.Errorf("took = %s in a window with no other file, want -1", took)
	}
}
