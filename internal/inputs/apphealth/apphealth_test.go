package apphealth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// start is when every fake clock starts.
var start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := Config{URL: "http://127.0.0.1:8080/healthz", Period: 2 * time.Second, Timeout: time.Second, Failures: 3, Successes: 2}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"neither URL nor File", func(c *Config) { c.URL = "" }, "set URL or File"},
		{"both URL and File", func(c *Config) { c.File = "/tmp/alive"; c.MaxAge = time.Second }, "set only one of URL and File"},
		{"relative URL", func(c *Config) { c.URL = "/healthz" }, "must be an absolute http or https URL with a host"},
		{"URL without host", func(c *Config) { c.URL = "http://:8080/healthz" }, "with a host"},
		{"URL of another scheme", func(c *Config) { c.URL = "ftp://127.0.0.1/" }, "http or https"},
		{"URL unparsable", func(c *Config) { c.URL = "http://[::1/" }, `URL "http://[::1/"`},
		{"no Timeout", func(c *Config) { c.Timeout = 0 }, "Timeout 0s must be greater than zero and at most Period 2s"},
		{"Timeout over Period", func(c *Config) { c.Timeout = 3 * time.Second }, "at most Period 2s"},
		{"no Period", func(c *Config) { c.Period = 0; c.Timeout = 0 }, "Period 0s must be greater than zero"},
		{"File without MaxAge", func(c *Config) { c.URL = ""; c.File = "/tmp/alive" }, "MaxAge 0s must be greater than zero"},
		{"no Failures", func(c *Config) { c.Failures = 0 }, "Failures 0 must be at least 1"},
		{"no Successes", func(c *Config) { c.Successes = -1 }, "Successes -1 must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tt.change(&cfg)
			c, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%+v) = %v, %v; want an error containing %q", cfg, c, err, tt.want)
			}
		})
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(%+v) = %v, want no error", good, err)
	}
}

func TestEnabled(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  Config
		want bool
	}{
		{Config{}, false},
		{Config{Period: time.Second}, false},
		{Config{URL: "http://127.0.0.1/"}, true},
		{Config{File: "/tmp/alive"}, true},
	} {
		if got := tt.cfg.Enabled(); got != tt.want {
			t.Errorf("%+v.Enabled() = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// server is an app whose health endpoint answers with the status set last.
type server struct {
	*httptest.Server
	status atomic.Int32
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

// run is a Checker running on a fake clock, with the reports it made.
type run struct {
	t   *testing.T
	clk *clocktesting.FakeClock
	c   *Checker
	log bytes.Buffer

	mu      sync.Mutex
	reports []string
	done    chan struct{}
	cancel  context.CancelFunc
}

// startRun starts a Checker of cfg on a fake clock and waits for its first
// check. It stops when the test ends.
func startRun(t *testing.T, cfg Config) *run {
	t.Helper()
	r := &run{t: t, clk: clocktesting.NewFakeClock(start), done: make(chan struct{})}
	cfg.Clock = r.clk
	cfg.Log = slog.New(slog.NewTextHandler(&syncWriter{w: &r.log}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	r.c = c
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		c.Run(ctx, func(healthy bool, reason string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.reports = append(r.reports, fmt.Sprintf("%v: %s", healthy, reason))
		})
	}()
	t.Cleanup(r.stop)
	r.waitCheck()
	return r
}

// stop ends Run and waits for it.
func (r *run) stop() {
	r.cancel()
	<-r.done
}

// waitCheck waits until the check at the fake clock's present is recorded.
func (r *run) waitCheck() {
	r.t.Helper()
	for r.c.State().LastCheck != r.clk.Now() {
		select {
		case <-r.done:
			r.t.Fatal("Run returned before checking")
		case <-time.After(time.Millisecond):
		}
	}
}

// step moves the clock by a period and waits for the check it starts.
func (r *run) step() {
	r.t.Helper()
	r.clk.Step(r.c.cfg.Period)
	r.waitCheck()
}

// Reports returns what Run reported, once it returned.
func (r *run) Reports() []string {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reports
}

// syncWriter serialises writes to the log buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// verdict is State in one letter: ? not known yet, H healthy, U unhealthy.
func verdict(s State) byte {
	switch {
	case !s.Checked:
		return '?'
	case s.Healthy:
		return 'H'
	}
	return 'U'
}

// TestHysteresis feeds checks that pass (P) or fail (F) and wants the
// verdict after each.
func TestHysteresis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		failures, successes int
		checks              string // P passes, F fails
		want                string // verdict after each check
		reports             []bool // the healthy argument of each report
	}{
		{"healthy after successes", 3, 2, "PPP", "?HH", []bool{true}},
		{"one success is enough when asked", 3, 1, "P", "H", []bool{true}},
		{"unhealthy before ever healthy", 3, 2, "FFFF", "??UU", []bool{false}},
		{"a failure at the start restarts the count", 3, 2, "PFPP", "???H", []bool{true}},
		{"a failure or two are tolerated", 3, 2, "PPFFPFF", "?HHHHHH", []bool{true}},
		{"failures in a row make it unhealthy", 3, 2, "PPFFF", "?HHHU", []bool{true, false}},
		{"back after successes in a row", 3, 2, "PPFFFPFPP", "?HHHUUUUH", []bool{true, false, true}},
		{"flapping does not flap the verdict", 3, 2, "PPFPFPFPFPFPF", "?HHHHHHHHHHHH", []bool{true}},
		{"flapping when unhealthy keeps it unhealthy", 2, 2, "PPFFPFPFPF", "?HHUUUUUUU", []bool{true, false}},
		{"flapping at the start stays unknown", 2, 2, "PFPFPFPF", "????????", nil},
		{"one failure is enough when asked", 1, 1, "PFPF", "HUHU", []bool{true, false, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t)
			set := func(c byte) {
				if c == 'P' {
					srv.status.Store(http.StatusOK)
				} else {
					srv.status.Store(http.StatusServiceUnavailable)
				}
			}
			set(tt.checks[0])
			r := startRun(t, Config{URL: srv.URL + "/healthz", Period: 2 * time.Second, Timeout: time.Second,
				Failures: tt.failures, Successes: tt.successes})
			var got []byte
			for i := range len(tt.checks) {
				if i > 0 {
					set(tt.checks[i])
					r.step()
				}
				st := r.c.State()
				got = append(got, verdict(st))
				if st.LastPassed != (tt.checks[i] == 'P') {
					t.Errorf("after check %d: State().LastPassed = %v", i+1, st.LastPassed)
				}
			}
			if string(got) != tt.want {
				t.Errorf("checks %s: verdicts %s, want %s", tt.checks, got, tt.want)
			}
			reports := r.Reports()
			if len(reports) != len(tt.reports) {
				t.Fatalf("reports = %q, want %d with healthy %v", reports, len(tt.reports), tt.reports)
			}
			for i, healthy := range tt.reports {
				want := fmt.Sprintf("%v: GET %s/healthz: status ", healthy, srv.URL)
				if !strings.HasPrefix(reports[i], want) {
					t.Errorf("report %d = %q, want it to start with %q", i+1, reports[i], want)
				}
			}
			// Each change is logged once, at info or warn.
			log := r.log.String()
			if n := strings.Count(log, "app is healthy") + strings.Count(log, "app is unhealthy"); n != len(tt.reports) {
				t.Errorf("log has %d changes, want %d:\n%s", n, len(tt.reports), log)
			}
		})
	}
}

func TestState(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.status.Store(http.StatusServiceUnavailable)
	r := startRun(t, Config{URL: srv.URL, Period: 2 * time.Second, Timeout: time.Second, Failures: 3, Successes: 2})
	r.step()
	want := State{
		Reason:      "GET " + srv.URL + ": status 503",
		Consecutive: 2,
		LastCheck:   start.Add(2 * time.Second),
	}
	if got := r.c.State(); got != want {
		t.Errorf("State() = %+v, want %+v", got, want)
	}
	srv.status.Store(http.StatusOK)
	r.step()
	r.step()
	want = State{
		Healthy:     true,
		Checked:     true,
		Reason:      "GET " + srv.URL + ": status 200",
		LastPassed:  true,
		Consecutive: 2,
		LastCheck:   start.Add(6 * time.Second),
	}
	if got := r.c.State(); got != want {
		t.Errorf("State() = %+v, want %+v", got, want)
	}
}

// TestGet checks one GET against apps that answer in various ways.
func TestGet(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/not-modified", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotModified) })
	mux.HandleFunc("/not-found", http.NotFound)
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.Handle("/moved", http.RedirectHandler("/ok", http.StatusFound))
	mux.Handle("/moved-down", http.RedirectHandler("/down", http.StatusMovedPermanently))
	mux.Handle("/elsewhere", http.RedirectHandler("http://elsewhere.invalid/healthz", http.StatusTemporaryRedirect))
	mux.Handle("/loop", http.RedirectHandler("/loop", http.StatusFound))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 4096)
		for {
			if _, err := w.Write(chunk); err != nil {
				return // the checker stopped reading
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(mux)
	closed.Close()

	tests := []struct {
		path   string
		url    string // instead of srv.URL+path
		passed bool
		reason string        // after "GET <url>: "
		slow   time.Duration // APP_HEALTH_TIMEOUT; 0: 5s, so that a loaded machine passes
	}{
		{path: "/ok", passed: true, reason: "status 200"},
		{path: "/no-content", passed: true, reason: "status 204"},
		{path: "/not-modified", passed: true, reason: "status 304"},
		{path: "/not-found", reason: "status 404"},
		{path: "/down", reason: "status 503"},
		{path: "/moved", passed: true, reason: "status 200 from " + srv.URL + "/ok"},
		{path: "/moved-down", reason: "status 503 from " + srv.URL + "/down"},
		{path: "/elsewhere", passed: true, reason: "status 307, a redirect to http://elsewhere.invalid/healthz on another host, not followed"},
		{path: "/loop", reason: "stopped after 10 redirects"},
		{path: "/slow", reason: "no answer within 50ms (APP_HEALTH_TIMEOUT)", slow: 50 * time.Millisecond},
		{path: "/endless", passed: true, reason: "status 200"},
		{path: "/refused", url: closed.URL + "/ok", reason: "dial tcp " + closed.Listener.Addr().String() + ": connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			u := tt.url
			if u == "" {
				u = srv.URL + tt.path
			}
			timeout := tt.slow
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			c, err := New(Config{URL: u, Period: 10 * time.Second, Timeout: timeout, Failures: 1, Successes: 1})
			if err != nil {
				t.Fatal(err)
			}
			passed, reason := c.check(t.Context(), start)
			if want := "GET " + u + ": " + tt.reason; passed != tt.passed || reason != want {
				t.Errorf("check() = %v, %q; want %v, %q", passed, reason, tt.passed, want)
			}
		})
	}
}

// TestGetOwnClient: a client passed in gets the redirect rule, but is not
// changed itself.
func TestGetOwnClient(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	own := &http.Client{}
	c, err := New(Config{URL: srv.URL, HTTP: own, Period: time.Second, Timeout: time.Second, Failures: 1, Successes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if passed, reason := c.check(t.Context(), start); !passed || !strings.Contains(reason, "not followed") {
		t.Errorf("check() = %v, %q; want a pass with the redirect not followed", passed, reason)
	}
	if own.CheckRedirect != nil {
		t.Error("New changed the client passed in")
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the app got %d requests, want 1", n)
	}
}

// TestHeartbeat checks one heartbeat file of various ages.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		age    time.Duration // of the file's mtime before start
		make   func(t *testing.T, path string)
		passed bool
		reason string // after "heartbeat <path> "
	}{
		{name: "fresh", age: 3 * time.Second, passed: true, reason: "is 3s old"},
		{name: "just in time", age: 10 * time.Second, passed: true, reason: "is 10s old"},
		{name: "just too old", age: 10*time.Second + 40*time.Millisecond, reason: "is 10.04s old (APP_HEALTH_FILE_MAX_AGE 10s)"},
		{name: "too old", age: 14 * time.Second, reason: "is 14s old (APP_HEALTH_FILE_MAX_AGE 10s)"},
		{name: "from the future", age: -5 * time.Second, passed: true, reason: "is 0s old"},
		{name: "missing", make: func(*testing.T, string) {}, reason: "is missing"},
		{name: "a directory", make: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, reason: "is a directory, not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "app-alive")
			if tt.make != nil {
				tt.make(t, path)
			} else {
				touch(t, path, start.Add(-tt.age))
			}
			c, err := New(Config{File: path, MaxAge: 10 * time.Second, Period: 2 * time.Second, Failures: 1, Successes: 1})
			if err != nil {
				t.Fatal(err)
			}
			passed, reason := c.check(t.Context(), start)
			if want := "heartbeat " + path + " " + tt.reason; passed != tt.passed || reason != want {
				t.Errorf("check() = %v, %q; want %v, %q", passed, reason, tt.passed, want)
			}
		})
	}
}

// TestHeartbeatRun: an app that stops touching its heartbeat becomes
// unhealthy after the failures, and healthy again once it touches it again.
func TestHeartbeatRun(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app-alive")
	r := startRun(t, Config{File: path, MaxAge: 5 * time.Second, Period: 2 * time.Second, Failures: 2, Successes: 2})
	var got []byte
	// The app touches the file at each check of "T", and not at "-".
	for _, c := range []byte("TT-----TT") {
		if c == 'T' {
			touch(t, path, r.clk.Now().Add(r.c.cfg.Period))
		}
		r.step()
		got = append(got, verdict(r.c.State()))
	}
	// The file missing at the first check is one failure, not enough. Then
	// two fresh heartbeats make it healthy; untouched, it is 2s and 4s old
	// (fresh), then 6s and 8s (two failures: unhealthy) and 10s; touched
	// twice again, healthy.
	if want := "?HHHHUUUH"; string(got) != want {
		t.Errorf("verdicts %s, want %s", got, want)
	}
	reports := r.Reports()
	want := []string{
		"true: heartbeat " + path + " is 0s old",
		"false: heartbeat " + path + " is 8s old (APP_HEALTH_FILE_MAX_AGE 5s)",
		"true: heartbeat " + path + " is 0s old",
	}
	if strings.Join(reports, "\n") != strings.Join(want, "\n") {
		t.Errorf("reports =\n%s\nwant\n%s", strings.Join(reports, "\n"), strings.Join(want, "\n"))
	}
}

// TestRunStopsWithoutRecordingACutCheck: a check cut short by the end of
// Run says nothing about the app.
func TestRunStopsWithoutRecordingACutCheck(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, Period: time.Hour, Timeout: time.Hour, Failures: 1, Successes: 1,
		Clock: clocktesting.NewFakeClock(start), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	reported := false
	go func() {
		defer close(done)
		c.Run(ctx, func(bool, string) { reported = true })
	}()
	<-entered
	cancel()
	<-done
	if got := c.State(); got != (State{}) || reported {
		t.Errorf("after a cut check: State() = %+v, reported %v; want nothing recorded", got, reported)
	}
}

func touch(t *testing.T, path string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestStateJSON pins the names /status shows.
func TestStateJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    State
		want string
	}{
		{State{}, `{"healthy":false,"checked":false,"last_passed":false,"consecutive":0}`},
		{State{Healthy: true, Checked: true, Reason: "GET http://x/: status 200", LastPassed: true, Consecutive: 2, LastCheck: start},
			`{"healthy":true,"checked":true,"reason":"GET http://x/: status 200","last_passed":true,"consecutive":2,"last_check":"2026-01-02T03:04:05Z"}`},
	} {
		b, err := json.Marshal(tt.s)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.s, b, err, tt.want)
		}
	}
}
