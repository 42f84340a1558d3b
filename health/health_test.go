package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestHandler(t *testing.T) {
	failing := func() error { return errors.New("election loop stalled") }
	passing := func() error { return nil }
	report := func() any {
		return map[string]any{"leader": "pod-0", "leading": true, "transitions": 3}
	}
	extra := map[string]http.Handler{"GET /metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "metrics\n")
	})}

	tests := []struct {
		name       string
		checks     Checks
		method     string
		path       string
		wantCode   int
		wantBody   string // exact, unless wantJSON
		wantJSON   any    // decoded body must equal this
		wantType   string // Content-Type prefix; "" to skip
		wantNoStor bool
	}{
		{name: "healthz ok with nil check", method: http.MethodGet, path: "/healthz", wantCode: 200, wantBody: "ok\n", wantType: "text/plain", wantNoStor: true},
		{name: "healthz ok", checks: Checks{Live: passing}, method: http.MethodGet, path: "/healthz", wantCode: 200, wantBody: "ok\n", wantType: "text/plain", wantNoStor: true},
		{name: "healthz failing", checks: Checks{Live: failing}, method: http.MethodGet, path: "/healthz", wantCode: 503, wantBody: "not ok: election loop stalled\n", wantType: "text/plain", wantNoStor: true},
		{name: "livez ok", checks: Checks{Live: passing}, method: http.MethodGet, path: "/livez", wantCode: 200, wantBody: "ok\n", wantType: "text/plain"},
		{name: "livez failing", checks: Checks{Live: failing}, method: http.MethodGet, path: "/livez", wantCode: 503, wantBody: "not ok: election loop stalled\n", wantType: "text/plain"},
		{name: "livez ignores Ready", checks: Checks{Ready: failing}, method: http.MethodGet, path: "/livez", wantCode: 200, wantBody: "ok\n"},
		{name: "readyz ok with nil check", method: http.MethodGet, path: "/readyz", wantCode: 200, wantBody: "ok\n", wantType: "text/plain", wantNoStor: true},
		{name: "readyz ok", checks: Checks{Ready: passing}, method: http.MethodGet, path: "/readyz", wantCode: 200, wantBody: "ok\n"},
		{name: "readyz failing", checks: Checks{Ready: failing}, method: http.MethodGet, path: "/readyz", wantCode: 503, wantBody: "not ok: election loop stalled\n", wantType: "text/plain", wantNoStor: true},
		{name: "readyz ignores Live", checks: Checks{Live: failing}, method: http.MethodGet, path: "/readyz", wantCode: 200, wantBody: "ok\n"},
		// GET patterns match HEAD; the recorder keeps the body a real server drops.
		{name: "HEAD healthz", checks: Checks{Live: passing}, method: http.MethodHead, path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "status", checks: Checks{Status: report}, method: http.MethodGet, path: "/status", wantCode: 200,
			wantJSON: map[string]any{"leader": "pod-0", "leading": true, "transitions": float64(3)}, wantType: "application/json", wantNoStor: true},
		{name: "status with nil func", method: http.MethodGet, path: "/status", wantCode: 200, wantJSON: map[string]any{}, wantType: "application/json"},
		{name: "status ignores failing checks", checks: Checks{Live: failing, Ready: failing, Status: report}, method: http.MethodGet, path: "/status", wantCode: 200,
			wantJSON: map[string]any{"leader": "pod-0", "leading": true, "transitions": float64(3)}, wantType: "application/json"},
		{name: "POST healthz", method: http.MethodPost, path: "/healthz", wantCode: 405},
		{name: "POST readyz", method: http.MethodPost, path: "/readyz", wantCode: 405},
		{name: "PUT status", method: http.MethodPut, path: "/status", wantCode: 405},
		{name: "unknown path", method: http.MethodGet, path: "/metrics", wantCode: 404},
		{name: "extra endpoint", checks: Checks{Extra: extra}, method: http.MethodGet, path: "/metrics", wantCode: 200, wantBody: "metrics\n", wantType: "text/plain"},
		{name: "extra endpoint keeps its method", checks: Checks{Extra: extra}, method: http.MethodPost, path: "/metrics", wantCode: 405},
		{name: "probes beside an extra endpoint", checks: Checks{Live: failing, Extra: extra}, method: http.MethodGet, path: "/livez", wantCode: 503, wantBody: "not ok: election loop stalled\n"},
		{name: "root", method: http.MethodGet, path: "/", wantCode: 404},
		{name: "subpath", method: http.MethodGet, path: "/healthz/extra", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			Handler(tt.checks).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			res := rec.Result()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}

			if res.StatusCode != tt.wantCode {
				t.Errorf("%s %s: status = %d, want %d (body %q)", tt.method, tt.path, res.StatusCode, tt.wantCode, body)
			}
			if tt.wantCode == http.StatusMethodNotAllowed {
				if allow := res.Header.Get("Allow"); !strings.Contains(allow, http.MethodGet) {
					t.Errorf("%s %s: Allow = %q, want GET listed", tt.method, tt.path, allow)
				}
			}
			if tt.wantType != "" {
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
					t.Errorf("%s %s: Content-Type = %q, want %s", tt.method, tt.path, ct, tt.wantType)
				}
			}
			if tt.wantNoStor {
				if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("%s %s: Cache-Control = %q, want no-store", tt.method, tt.path, cc)
				}
			}
			switch {
			case tt.wantJSON != nil:
				var got any
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%s %s: body %q is not JSON: %v", tt.method, tt.path, body, err)
				}
				if !jsonEqual(got, tt.wantJSON) {
					t.Errorf("%s %s: body = %v, want %v", tt.method, tt.path, got, tt.wantJSON)
				}
			case tt.wantCode == 200 || tt.wantCode == 503:
				if string(body) != tt.wantBody {
					t.Errorf("%s %s: body = %q, want %q", tt.method, tt.path, body, tt.wantBody)
				}
			}
		})
	}
}

// jsonEqual compares decoded JSON values.
func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func TestHandlerCallsChecksPerRequest(t *testing.T) {
	var err error
	h := Handler(Checks{Ready: func() error { return err }})
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{name: "ready", want: 200},
		{name: "not ready", err: errors.New("status directory not writable"), want: 503},
		{name: "ready again", want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err = tc.err
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.want {
				t.Errorf("GET /readyz = %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

func TestListenPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	addr := taken.Addr().String()

	s, err := Listen(addr, Handler(Checks{}), discard)
	if err == nil {
		s.ln.Close()
		t.Fatalf("Listen(%s) on a taken port = nil error", addr)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("Listen(%s) error = %v, want it to name the address", addr, err)
	}
}

// serve runs s.Serve until stop or the end of the test. stop cancels its
// context and returns what Serve returned; it fails the test if Serve does not
// return in time.
func serve(t *testing.T, s *Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				err = errors.New("Serve did not return within 5s after cancel")
				t.Error(err)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestServeShutsDownOnCancel(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Handler(Checks{Status: func() any { return "leading" }}), discard)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	stop := serve(t, s)

	// The listener is bound before Serve runs, so the first request succeeds.
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || strings.TrimSpace(string(body)) != `"leading"` {
		t.Errorf("GET /status = %d %q, want 200 \"leading\"", res.StatusCode, body)
	}
	client.CloseIdleConnections()

	if err := stop(); err != nil {
		t.Errorf("Serve() after cancel = %v, want nil", err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s not released after Serve returned: %v", addr, err)
	}
	ln.Close()
}

func TestServeShutsDownWithIdleKeepAlive(t *testing.T) {
	// A client holding an idle keep-alive connection must not delay or fail
	// the graceful shutdown.
	s, err := Listen("127.0.0.1:0", Handler(Checks{}), discard)
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, s)

	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	res, err := client.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()

	if err := stop(); err != nil {
		t.Errorf("Serve() after cancel = %v, want nil", err)
	}
}
