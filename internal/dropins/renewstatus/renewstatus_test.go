package renewstatus

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/election"
)

func TestHandler(t *testing.T) {
	const (
		leaseDuration = 15 * time.Second
		renewDeadline = 10 * time.Second
	)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// leading is a leader whose last renew was sent at start.
	leading := election.State{Identity: "pod-0", Leader: "pod-0", IsLeader: true, LeadUntil: start.Add(renewDeadline)}
	for _, tc := range []struct {
		name  string
		st    election.State
		after time.Duration // since start
		path  string
		code  int
		body  string
	}{
		{"leader just renewed", leading, 0, "/", 200, `{"status": "ok"}`},
		{"leader at its renew deadline", leading, renewDeadline, "/", 200, `{"status": "ok"}`},
		{"leader at lease duration plus slack", leading, leaseDuration + Slack, "/", 200, `{"status": "ok"}`},
		{"leader just past it", leading, leaseDuration + Slack + time.Millisecond, "/", 500, `{"status": "expired"}`},
		{"leader long past it, any path", leading, time.Hour, "/healthz", 500, `{"status": "expired"}`},
		{"follower, a live leader", election.State{Identity: "pod-0", Leader: "pod-1", HeldUntil: start.Add(leaseDuration)}, time.Hour, "/", 200, `{"status": "ok"}`},
		{"follower, no leader", election.State{Identity: "pod-0"}, time.Hour, "/x/y", 200, `{"status": "ok"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(start.Add(tc.after))
			h := Handler(Config{State: func() election.State { return tc.st }, Clock: clk,
				LeaseDuration: leaseDuration, RenewDeadline: renewDeadline})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.code || string(body) != tc.body {
				t.Errorf("GET %s = %d %q, want %d %q", tc.path, rec.Code, body, tc.code, tc.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q, want the original's sniffed text/plain; charset=utf-8", ct)
			}
		})
	}
}
