package testcluster

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a TLS server standing for the API server: /stream sends a line
// for each value on lines, anything else answers the Authorization header.
type upstream struct {
	srv   *httptest.Server
	lines chan string
	hits  atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{lines: make(chan string)}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if r.URL.Path != "/stream" {
			fmt.Fprint(w, r.Header.Get("Authorization"))
			return
		}
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		for {
			select {
			case l := <-u.lines:
				fmt.Fprintln(w, l)
				http.NewResponseController(w).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func newTestProxy(t *testing.T, u *upstream) *Proxy {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.srv.Certificate().Raw})
	p, err := NewProxy(u.srv.URL, ca, "secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func get(ctx context.Context, url string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// openStream starts a stream through p and returns its lines.
func openStream(t *testing.T, p *Proxy) (<-chan string, <-chan error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL+"/stream?watch=true", nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines, errs := make(chan string, 10), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		errs <- errors.Join(sc.Err(), io.ErrUnexpectedEOF)
	}()
	return lines, errs
}

func TestProxyPassesAndCounts(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	code, body, err := get(t.Context(), p.URL+"/api/v1/namespaces/ns/pods/a")
	if err != nil || code != 200 || body != "Bearer secret" {
		t.Fatalf("GET = %d %q %v, want 200 with the token", code, body, err)
	}
	lines, _ := openStream(t, p)
	u.lines <- "one"
	if l := <-lines; l != "one" {
		t.Errorf("stream line = %q", l)
	}
	if c := p.Counts(); c.Requests != 1 || c.Watches != 1 || c.Conns < 1 {
		t.Errorf("counts = %+v, want 1 request, 1 watch, some connections", c)
	}
}

func TestProxyDelaysPodRequestsOnly(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	const d = 300 * time.Millisecond
	p.SetDelay(d, PodRequests)
	for _, tc := range []struct {
		path    string
		delayed bool
	}{
		{"/api/v1/namespaces/ns/pods/a", true},
		{"/api/v1/namespaces/ns/pods", true},
		{"/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", false},
	} {
		start := time.Now()
		if _, _, err := get(t.Context(), p.URL+tc.path); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); tc.delayed && took < d {
			t.Errorf("%s took %s, want at least the delay %s", tc.path, took, d)
		} else if !tc.delayed && took >= d {
			t.Errorf("%s took %s: delayed, but it is no pod request", tc.path, took)
		}
	}
	p.SetDelay(d, AllRequests)
	start := time.Now()
	if _, _, err := get(t.Context(), p.URL+"/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < d {
		t.Errorf("with all requests delayed, a Lease request took %s, want at least %s", took, d)
	}
}

func TestProxyBlackholeHoldsNewRequestsAndStallsStreams(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	lines, _ := openStream(t, p)
	u.lines <- "before"
	if l := <-lines; l != "before" {
		t.Fatalf("stream line = %q", l)
	}
	p.SetMode(Blackhole)

	// A request that gives up while held never reaches the server.
	hits := u.hits.Load()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := get(ctx, p.URL+"/x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET in a blackhole: err = %v, want the client's deadline", err)
	}
	// One that waits is forwarded when the blackhole ends.
	late := make(chan error, 1)
	go func() {
		_, body, err := get(t.Context(), p.URL+"/y")
		if err == nil && body != "Bearer secret" {
			err = fmt.Errorf("body %q", body)
		}
		late <- err
	}()
	// The stream stalls: a line the server sends does not arrive.
	u.lines <- "during"
	select {
	case l := <-lines:
		t.Errorf("line %q passed the blackhole", l)
	case err := <-late:
		t.Errorf("a request passed the blackhole (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if got := u.hits.Load(); got != hits {
		t.Errorf("the server got %d requests during the blackhole", got-hits)
	}

	p.SetMode(Pass)
	if l := <-lines; l != "during" {
		t.Errorf("after the blackhole the stream delivered %q, want the held line", l)
	}
	if err := <-late; err != nil {
		t.Errorf("held request after the blackhole: %v", err)
	}
}

func TestProxyResetEndsStreamsAndRefusesConnections(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	lines, errs := openStream(t, p)
	u.lines <- "before"
	<-lines
	p.SetMode(Reset)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "reset") && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream in flight survived the reset")
	}
	conns := p.Counts().Conns
	c := &http.Client{Transport: &http.Transport{}}
	if resp, err := c.Get(p.URL + "/x"); err == nil {
		resp.Body.Close()
		t.Errorf("GET during reset = %s, want a connection error", resp.Status)
	}
	if p.Counts().Conns <= conns {
		t.Errorf("the reset connection was not counted")
	}
	p.SetMode(Pass)
	if code, _, err := get(t.Context(), p.URL+"/x"); err != nil || code != 200 {
		t.Errorf("GET after the reset = %d %v", code, err)
	}
}

func TestProxyUnavailableAnswers503(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	p.SetDown(true)
	if code, _, err := get(t.Context(), p.URL+"/x"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("GET while down = %d %v, want 503", code, err)
	}
	p.SetDown(false)
	if code, _, err := get(t.Context(), p.URL+"/x"); err != nil || code != 200 {
		t.Errorf("GET after down = %d %v", code, err)
	}
}

func TestProxyObservesEveryRequest(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	seen := make(chan Request, 4)
	p.Observe(func(r Request) { seen <- r })
	p.SetMode(Unavailable)
	_, _, _ = get(t.Context(), p.URL+"/api/v1/namespaces/ns/pods/a")
	r := <-seen
	if r.Method != http.MethodGet || r.Path != "/api/v1/namespaces/ns/pods/a" || r.Watch || r.Time.IsZero() {
		t.Errorf("observed %+v", r)
	}
}

// TestProxyObservesAnswers: each request's answer is reported with the
// upstream's status, and one the proxy cut off with 0.
func TestProxyObservesAnswers(t *testing.T) {
	u := newUpstream(t)
	p := newTestProxy(t, u)
	type answer struct {
		path   string
		status int
	}
	answers := make(chan answer, 4)
	p.ObserveAnswers(func(r Request, status int) { answers <- answer{r.Path, status} })
	if code, _, err := get(t.Context(), p.URL+"/x"); err != nil || code != 200 {
		t.Fatalf("GET = %d %v", code, err)
	}
	if a := <-answers; a != (answer{"/x", 200}) {
		t.Errorf("answered %+v, want /x 200", a)
	}
	p.SetMode(Unavailable)
	_, _, _ = get(t.Context(), p.URL+"/y")
	if a := <-answers; a != (answer{"/y", 0}) {
		t.Errorf("answered %+v while down, want /y 0 (the API server answered nothing)", a)
	}
}
