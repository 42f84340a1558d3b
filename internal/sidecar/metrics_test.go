package sidecar

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"
)

// scrape GETs /metrics from h and returns the body.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %q", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// sample returns the value of the sample that starts with series (name and
// labels as exposed), or -1 when there is none.
func sample(body, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// TestMetricsFollowTheElection: /metrics on the health port shows the
// leadership, the renews, and the step-down.
func TestMetricsFollowTheElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(5 * time.Second) // the first start, then two renews
		synctest.Wait()
		body := scrape(t, r.s.handler())
		for series, want := range map[string]float64{
			`leader_election_master_status{name="lock"}`:  1,
			`leader_elector_is_leader`:                    1,
			`leader_election_slowpath_total{name="lock"}`: 0,
			`leader_elector_lease_transitions`:            0,
			`leader_elector_transitions_total`:            0, // its own first start is no change
			`leader_elector_renew_duration_seconds_count`: 3, // the create and two renews
			`leader_elector_handover_seconds_count`:       0, // nobody led before
			`leader_elector_watch_restarts_total`:         0,
			`leader_elector_status_file_errors_total`:     0,
		} {
			if got := sample(body, series); got != want {
				t.Errorf("%s = %g, want %g", series, got, want)
			}
		}
		if got, want := sample(body, "leader_elector_last_renew_timestamp_seconds"), float64(time.Now().Add(-time.Second).Unix()); got != want {
			t.Errorf("last_renew_timestamp_seconds = %g, want %g, the last renew's", got, want)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
		body = scrape(t, r.s.handler())
		if got := sample(body, `leader_election_master_status{name="lock"}`); got != 0 {
			t.Errorf("master_status after the step-down = %g, want 0", got)
		}
	})
}

// TestMetricsCountErrorsOfFileAndLabel: the errors that no request shows.
func TestMetricsCountErrorsOfFileAndLabel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: ns, Labels: map[string]string{"app": "myapp"}}}
		c := newCluster(t, pod)
		c.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "pod-a", errors.New("denied by policy"))
		})
		cfg := testConfig(t)
		cfg.LabelPodRole = true
		cfg.StatusFile = filepath.Join(t.TempDir(), "missing", "leader_status")
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		body := scrape(t, r.s.handler())
		for _, series := range []string{
			"leader_elector_status_file_errors_total",
			"leader_elector_label_errors_total",
			`leader_elector_api_errors_total{code="403",op="pod_patch"}`,
		} {
			if got := sample(body, series); got < 1 {
				t.Errorf("%s = %g, want at least 1", series, got)
			}
		}
		if got := sample(body, `leader_elector_is_leader`); got != 0 {
			t.Errorf("is_leader = %g with an unwritable status file, want 0", got)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestMetricsAddress: with METRICS_ADDRESS, /metrics is there alone, and no
// longer on the health port.
func TestMetricsAddress(t *testing.T) {
	c := newCluster(t)
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	health, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: health, Metrics: mln})
	t.Cleanup(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	get := func(ln net.Listener, path string) (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var body string
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var code int
		code, body = get(mln, "/metrics")
		return code == http.StatusOK && sample(body, `leader_election_master_status{name="lock"}`) == 1, nil
	})
	if err != nil {
		t.Fatalf("METRICS_ADDRESS /metrics never showed the leader:\n%s", body)
	}
	if code, _ := get(mln, "/healthz"); code != http.StatusNotFound {
		t.Errorf("METRICS_ADDRESS /healthz = %d, want 404: the listener is for /metrics only", code)
	}
	if code, _ := get(health, "/metrics"); code != http.StatusNotFound {
		t.Errorf("health port /metrics = %d with METRICS_ADDRESS set, want 404", code)
	}
	if code, _ := get(health, "/healthz"); code != http.StatusOK {
		t.Errorf("health port /healthz = %d, want 200", code)
	}
}

func TestMetricsAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	c := newCluster(t)
	cfg := testConfig(t)
	cfg.MetricsAddr = taken.Addr().String()
	s, err := New(cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: newIdleListener(nil)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "METRICS_ADDRESS="+cfg.MetricsAddr) {
		t.Errorf("Run with METRICS_ADDRESS taken = %v, want an error naming it", err)
	}
}
