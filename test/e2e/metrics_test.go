package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// scrape is one parse of a sidecar's /metrics.
type scrape = testcluster.Metrics

func scrapeMetrics(s *testcluster.Sidecar) (scrape, error) { return s.ScrapeMetrics() }

func leading(sc scrape) float64 {
	return sc.Value("leader_election_master_status", "name", leaseName)
}

// TestMetricsAcrossHandover scrapes /metrics from three sidecars before and
// after a graceful handover and checks the values against the Lease.
func TestMetricsAcrossHandover(t *testing.T) {
	f := newFleet(t)
	// The first replica alone: it finds no Lease (a 404) and creates it.
	f.add(1, "LABEL_POD_ROLE=true")
	first := f.waitLeader(30*time.Second, true)
	f.add(2, "LABEL_POD_ROLE=true")
	f.waitLeader(30*time.Second, true)

	// wantAll waits until every running sidecar's scrape passes check.
	wantAll := func(what string, check func(s *testcluster.Sidecar, sc scrape) error) map[string]scrape {
		t.Helper()
		var last error
		var out map[string]scrape
		ok := eventually(15*time.Second, func() bool {
			out, last = map[string]scrape{}, nil
			for _, s := range f.all() {
				if s.Exited() {
					continue
				}
				sc, err := scrapeMetrics(s)
				if err == nil {
					err = check(s, sc)
				}
				if err != nil {
					last = fmt.Errorf("%s: %w", s.Opts.Pod, err)
					return false
				}
				out[s.Opts.Pod] = sc
			}
			return true
		})
		if !ok {
			t.Fatalf("%s: %v", what, last)
		}
		return out
	}
	leaseTransitions := func() float64 {
		l, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
		if err != nil || l.Spec.LeaseTransitions == nil {
			t.Fatalf("read the Lease: %v, %v", l, err)
		}
		return float64(*l.Spec.LeaseTransitions)
	}

	// Before: one leader; everyone agrees with the Lease.
	spec := leaseTransitions()
	before := wantAll("before the handover", func(s *testcluster.Sidecar, sc scrape) error {
		lead := s.Opts.Pod == first
		want := map[string]float64{"master_status": 0, "is_leader": 0, "lease_transitions": spec, "transitions_total": 0}
		if lead {
			want["master_status"], want["is_leader"] = 1, 1
		}
		got := map[string]float64{
			"master_status":     leading(sc),
			"is_leader":         sc.Value("leader_elector_is_leader"),
			"lease_transitions": sc.Value("leader_elector_lease_transitions"),
			"transitions_total": sc.Value("leader_elector_transitions_total"),
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %g, want %g (all: %v)", k, got[k], v, got)
			}
		}
		if n, _ := sc.Histogram("leader_elector_renew_duration_seconds"); lead && n == 0 {
			return fmt.Errorf("the leader's renew_duration_seconds has no sample")
		}
		return nil
	})
	checkRegistry(t, before)
	if got := before[first].Value("leader_elector_api_errors_total", "op", "lease_get", "code", "404"); !(got >= 1) {
		t.Errorf("%s: api_errors_total{op=lease_get,code=404} = %g, want its first read of the missing Lease", first, got)
	}

	// SIGTERM: the leader releases and a follower takes over.
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := f.waitLeader(leaseDuration, true)
	if second == first {
		t.Fatalf("the terminated leader %s still leads", first)
	}
	spec = leaseTransitions()
	if spec != 1 {
		t.Errorf("the Lease's leaseTransitions = %g after one handover, want 1", spec)
	}
	after := wantAll("after the handover", func(s *testcluster.Sidecar, sc scrape) error {
		lead := s.Opts.Pod == second
		want := map[string]float64{"master_status": 0, "is_leader": 0, "lease_transitions": spec, "transitions_total": 1}
		if lead {
			want["master_status"], want["is_leader"] = 1, 1
		}
		got := map[string]float64{
			"master_status":     leading(sc),
			"is_leader":         sc.Value("leader_elector_is_leader"),
			"lease_transitions": sc.Value("leader_elector_lease_transitions"),
			"transitions_total": sc.Value("leader_elector_transitions_total"),
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %g, want %g (all: %v)", k, got[k], v, got)
			}
		}
		n, _ := sc.Histogram("leader_elector_handover_seconds")
		if lead && n != 1 || !lead && n != 0 {
			return fmt.Errorf("handover_seconds count = %d (leader: %v)", n, lead)
		}
		if n, _ := sc.Histogram("leader_elector_renew_duration_seconds"); lead && n == 0 {
			return fmt.Errorf("the leader's renew_duration_seconds has no sample")
		}
		return nil
	})
	checkRegistry(t, after)
	n, sum := after[second].Histogram("leader_elector_handover_seconds")
	t.Logf("handover %s -> %s: handover_seconds count %d, %.1f ms from seeing the release to publishing the status file", first, second, n, sum*1000)
	if sum <= 0 || sum >= leaseDuration.Seconds() {
		t.Errorf("handover_seconds sum = %gs, want between 0 and LeaseDuration", sum)
	}
	for pod, sc := range after {
		for _, name := range []string{"leader_elector_label_errors_total", "leader_elector_status_file_errors_total", "leader_election_slowpath_total"} {
			if v := sc.Value(name); v != 0 {
				t.Errorf("%s: %s = %g, want 0 in a fault-free run", pod, name, v)
			}
		}
		if v := sc.Value("leader_elector_lease_observed_age_seconds"); !(v >= 0 && v < leaseDuration.Seconds()) {
			t.Errorf("%s: lease_observed_age_seconds = %g", pod, v)
		}
		if ts := sc.Value("leader_elector_last_renew_timestamp_seconds"); pod == second && time.Since(time.Unix(0, int64(ts*1e9))) > renewDeadline {
			t.Errorf("%s: last_renew_timestamp_seconds = %g, older than RENEW_DEADLINE", pod, ts)
		}
	}
}

// checkRegistry: only the runtime, process and election metrics, each with
// help text; nothing an imported package registered by default (client-go's
// rest_client_* or workqueue_*, say).
func checkRegistry(t *testing.T, scrapes map[string]scrape) {
	t.Helper()
	for pod, sc := range scrapes {
		for name, mf := range sc {
			if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") &&
				!strings.HasPrefix(name, "leader_election_") && !strings.HasPrefix(name, "leader_elector_") {
				t.Errorf("%s: unexpected metric %s", pod, name)
			}
			if mf.GetHelp() == "" {
				t.Errorf("%s: %s has no help text", pod, name)
			}
		}
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "leader_election_slowpath_total",
			"leader_elector_watch_restarts_total", "leader_elector_handover_seconds"} {
			if sc[name] == nil {
				t.Errorf("%s: no %s", pod, name)
			}
		}
	}
}
