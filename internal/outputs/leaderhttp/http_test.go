package leaderhttp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

const aJSON = `{"name":"a","last_update":"2026-01-02T03:04:05Z"}`

func TestNAISGet(t *testing.T) {
	h, fe, _ := newTestHub(t, nil)
	srv, client := newServer(t, h.NAISHandler())
	for _, path := range []string{"/", "/anything", "/sse/", "/x/y?z=1"} {
		code, hd, body := get(t, client, srv.URL+path)
		if code != http.StatusOK || body != `{}` || hd.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s with no leader: %d %q %q, want 200 {} application/json", path, code, hd.Get("Content-Type"), body)
		}
	}
	fe.set(leaderState("a", 1, t0.Add(time.Hour)))
	for _, path := range []string{"/", "/anything", "/x/y?z=1"} {
		code, hd, body := get(t, client, srv.URL+path)
		if code != http.StatusOK || body != aJSON || hd.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %q %q, want 200 %s application/json", path, code, hd.Get("Content-Type"), body, aJSON)
		}
	}
}

func TestSSE(t *testing.T) {
	for _, tc := range []struct {
		path, empty, a, b string
	}{
		{"/sse", `{}`, aJSON, `{"name":"b","last_update":"2026-01-02T03:04:05Z"}`},
		{"/watch", `{"is_leader":false,"identity":"me","transitions":0}`,
			`{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":1}`,
			`{"name":"b","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":2}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h, fe, _ := newTestHub(t, nil)
			handler := h.NAISHandler()
			if tc.path == "/watch" {
				handler = h.Handler()
			}
			srv, client := newServer(t, handler)
			s := openStream(t, client, srv.URL+tc.path)
			for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"} {
				if got := s.resp.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if got, want := s.next(t), "data: "+tc.empty+"\n\n"; got != want {
				t.Fatalf("on connect: %q, want %q", got, want)
			}
			fe.set(leaderState("a", 1, t0.Add(time.Hour)))
			// A change the JSON does not show is no message.
			st := leaderState("a", 1, t0.Add(time.Hour))
			st.LastObserved = t0.Add(time.Second)
			fe.set(st)
			fe.set(leaderState("b", 2, t0.Add(time.Hour)))
			for _, want := range []string{tc.a, tc.b} {
				if got := s.next(t); got != "data: "+want+"\n\n" {
					t.Fatalf("message %q, want %q", got, "data: "+want+"\n\n")
				}
			}
		})
	}
}

// The NAIS stream carries only its own fields: a change of transitions with
// no leader either way is news on /watch only.
func TestSSEOneMessagePerChangeOfItsJSON(t *testing.T) {
	h, fe, _ := newTestHub(t, nil)
	mux := http.NewServeMux()
	mux.Handle("/watch", h.Handler())
	mux.Handle("/", h.NAISHandler())
	srv, client := newServer(t, mux)
	nais, ours := openStream(t, client, srv.URL+"/sse"), openStream(t, client, srv.URL+"/watch")
	nais.next(t)
	ours.next(t)
	fe.set(election.State{Identity: "me", Transitions: 5})
	fe.set(leaderState("a", 6, t0.Add(time.Hour)))
	if got := nais.next(t); got != "data: "+aJSON+"\n\n" {
		t.Errorf("/sse: %q, want only the new leader", got)
	}
	for _, want := range []string{`{"is_leader":false,"identity":"me","transitions":5}`,
		`{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":6}`} {
		if got := ours.next(t); got != "data: "+want+"\n\n" {
			t.Errorf("/watch: %q, want %q", got, "data: "+want+"\n\n")
		}
	}
}

func TestHeartbeat(t *testing.T) {
	h, fe, fc := newTestHub(t, func(c *Config) { c.Heartbeat = 20 * time.Second })
	srv, client := newServer(t, h.NAISHandler())
	s := openStream(t, client, srv.URL+"/sse")
	if got := s.next(t); got != "data: {}\n\n" {
		t.Fatalf("on connect: %q", got)
	}
	fc.Step(19 * time.Second)
	fe.set(leaderState("a", 1, t0.Add(time.Hour)))
	if got := s.next(t); got != "data: "+aJSON+"\n\n" {
		t.Fatalf("change: %q", got) // no ping before 20s
	}
	fc.Step(time.Second)
	if got := s.next(t); got != ": ping\n\n" {
		t.Fatalf("after 20s: %q, want a comment line", got)
	}
	fc.Step(20 * time.Second)
	if got := s.next(t); got != ": ping\n\n" {
		t.Fatalf("after 40s: %q, want a comment line", got)
	}
}

// A stream's subscriber, goroutines and slot go when its request ends.
func TestStreamEndsWithItsRequest(t *testing.T) {
	h, _, _ := newTestHub(t, func(c *Config) { c.MaxLocalClients = 1 })
	srv, client := newServer(t, h.NAISHandler())
	base := runtime.NumGoroutine()
	for range 3 { // with one slot, each stream must give it back
		s := openStream(t, client, srv.URL+"/sse")
		s.next(t)
		if n := h.Subscribers(); n != 1 {
			t.Fatalf("subscribers: %d, want 1", n)
		}
		s.close()
		eventually(t, "subscriber removed", func() bool { return h.Subscribers() == 0 })
		client.Transport.(*http.Transport).CloseIdleConnections()
		settleGoroutines(t, base)
	}
}

// TestTooManyClients: each listener has a pool of its own, so that streams
// on the health port never take the slots of the app's /sse on
// LEADER_HTTP_ADDRESS, and one client address gets at most MaxPerClient of
// the health port's.
func TestTooManyClients(t *testing.T) {
	h, _, _ := newTestHub(t, func(c *Config) { c.MaxClients, c.MaxPerClient, c.MaxLocalClients = 3, 2, 1 })
	health, client := newServer(t, h.Handler())
	local, _ := newServer(t, h.NAISHandler())
	// One address (the test's loopback) fills its share of the health port.
	openStream(t, client, health.URL+"/watch").next(t)
	openStream(t, client, health.URL+"/watch").next(t)
	for _, path := range []string{"/watch", "/leader?wait=1m"} {
		code, hd, body := get(t, client, health.URL+path)
		if code != http.StatusServiceUnavailable || hd.Get("Retry-After") == "" || !strings.Contains(body, "at most 2 per client address") {
			t.Errorf("%s beyond MaxPerClient: %d %q %q, want 503 with Retry-After", path, code, hd.Get("Retry-After"), body)
		}
	}
	if code, _, body := get(t, client, health.URL+"/leader"); code != http.StatusOK {
		t.Errorf("/leader without wait takes no slot: %d %q", code, body)
	}
	// The local listener's pool is untouched by the health port's streams.
	openStream(t, client, local.URL+"/sse").next(t)
	code, hd, body := get(t, client, local.URL+"/sse")
	if code != http.StatusServiceUnavailable || hd.Get("Retry-After") == "" || !strings.Contains(body, "LEADER_HTTP_ADDRESS (at most 1)") {
		t.Errorf("/sse beyond MaxLocalClients: %d %q %q, want 503 with Retry-After", code, hd.Get("Retry-After"), body)
	}
}

// TestPoolBoundsAllAndEachAddress: a pool's total bound and its bound per
// client address, and the slots given back.
func TestPoolBoundsAllAndEachAddress(t *testing.T) {
	p := newPool("the health port", 3, 2)
	req := func(addr string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/watch", nil)
		r.RemoteAddr = addr
		return r
	}
	try := func(addr string) int {
		rec := httptest.NewRecorder()
		if p.acquire(rec, req(addr)) {
			return http.StatusOK
		}
		return rec.Code
	}
	for i, tc := range []struct {
		addr string
		want int
	}{
		{"10.0.0.1:1000", 200}, {"10.0.0.1:1001", 200}, {"10.0.0.1:1002", 503}, // per address, whatever the port
		{"10.0.0.2:1000", 200}, {"10.0.0.3:1000", 503}, // in all
	} {
		if got := try(tc.addr); got != tc.want {
			t.Errorf("request %d from %s: %d, want %d", i, tc.addr, got, tc.want)
		}
	}
	p.release(req("10.0.0.1:1000"))
	if got := try("10.0.0.3:1000"); got != 200 {
		t.Errorf("after a release: %d, want 200", got)
	}
}

// blockedWriter is a client that stopped reading: every write waits until
// release is closed.
type blockedWriter struct {
	header  http.Header
	release chan struct{}
	writing chan struct{} // closed at the first write
	once    sync.Once
}

func (w *blockedWriter) Header() http.Header { return w.header }
func (w *blockedWriter) WriteHeader(int)     {}
func (w *blockedWriter) Flush()              {}
func (w *blockedWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return len(b), nil
}

func TestSlowReaderIsDropped(t *testing.T) {
	h, fe, _ := newTestHub(t, func(c *Config) { c.Buffer = 4 })
	srv, client := newServer(t, h.NAISHandler())
	fast := openStream(t, client, srv.URL+"/sse")
	fast.next(t)

	w := &blockedWriter{header: http.Header{}, release: make(chan struct{}), writing: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.NAISHandler().ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "/sse", nil))
	}()
	<-w.writing // stuck in its first message
	if n := h.Subscribers(); n != 2 {
		t.Fatalf("subscribers: %d, want 2", n)
	}
	// Each Observe returns although the slow stream takes nothing: its
	// buffer fills, then it is dropped; the fast one hears every change.
	for i := range 20 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			fe.set(leaderState(string(rune('a'+i)), i+1, t0.Add(time.Hour)))
		}()
		select {
		case <-done:
		case <-time.After(hang):
			t.Fatal("Observe blocked on a slow reader")
		}
		want := `data: {"name":"` + string(rune('a'+i)) + `","last_update":"2026-01-02T03:04:05Z"}` + "\n\n"
		if got := fast.next(t); got != want {
			t.Fatalf("fast reader, change %d: %q, want %q", i, got, want)
		}
		wantSubs := 2
		if i >= 4 { // the fifth change found the slow one's buffer full
			wantSubs = 1
		}
		if n := h.Subscribers(); n != wantSubs {
			t.Fatalf("after change %d: %d subscribers, want %d", i, n, wantSubs)
		}
	}
	close(w.release) // its write returns: it finds itself dropped and ends
	select {
	case <-served:
	case <-time.After(hang):
		t.Fatal("the dropped stream did not end")
	}
}

func TestLongPoll(t *testing.T) {
	h, fe, fc := newTestHub(t, nil)
	srv, client := newServer(t, h.Handler())
	fe.set(leaderState("a", 3, t0.Add(time.Hour)))
	a3 := `{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":3}` + "\n"
	b4 := `{"name":"b","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":4}` + "\n"

	t.Run("no wait answers at once", func(t *testing.T) {
		code, hd, body := get(t, client, srv.URL+"/leader")
		if code != http.StatusOK || body != a3 || hd.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %q %q, want %q", code, hd.Get("Content-Type"), body, a3)
		}
	})
	for _, q := range []string{"wait=30s&since=2", "wait=30s&since=3&name=b", "wait=30s&name=", "since=3"} {
		t.Run(q+" answers at once", func(t *testing.T) {
			if code, _, body := get(t, client, srv.URL+"/leader?"+q); code != http.StatusOK || body != a3 {
				t.Fatalf("%d %q, want %q", code, body, a3)
			}
		})
	}

	// poll starts a long-poll and returns its answer's channel once it
	// waits: the fake clock has its timer and the hub's (a leader is named).
	poll := func(t *testing.T, q string) <-chan string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			resp, err := client.Get(srv.URL + "/leader?" + q)
			if err != nil {
				got <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		}()
		waitWaiters(t, fc, 2)
		return got
	}
	t.Run("waits for a change", func(t *testing.T) {
		for _, q := range []string{"wait=30s&since=3", "wait=30s&since=3&name=a", "wait=30s"} {
			got := poll(t, q)
			select {
			case body := <-got:
				t.Fatalf("%s: answered %q before any change", q, body)
			default:
			}
			fe.set(leaderState("b", 4, t0.Add(time.Hour)))
			if body := <-got; body != b4 {
				t.Fatalf("%s: %q, want %q", q, body, b4)
			}
			fe.set(leaderState("a", 3, t0.Add(time.Hour)))
		}
	})
	t.Run("the end of a term is a change", func(t *testing.T) {
		fe.set(leaderState("a", 3, fc.Now().Add(time.Minute)))
		got := poll(t, "wait=5m&since=3")
		fc.Step(time.Minute)
		want := `{"is_leader":false,"identity":"me","transitions":3}` + "\n"
		if body := <-got; body != want {
			t.Fatalf("%q, want %q", body, want)
		}
		fe.set(leaderState("a", 3, fc.Now().Add(time.Hour)))
	})
	t.Run("answers the same after wait", func(t *testing.T) {
		got := poll(t, "wait=30s&since=3")
		fc.Step(30 * time.Second)
		if body := <-got; body != a3 {
			t.Fatalf("%q, want %q", body, a3)
		}
	})
}

func TestLongPollBadParameters(t *testing.T) {
	h, _, _ := newTestHub(t, nil)
	srv, client := newServer(t, h.Handler())
	for q, want := range map[string]string{
		"wait=abc":          `wait="abc": must be a Go duration from 0s to 5m0s, such as 30s`,
		"wait=-1s":          `wait="-1s": must be a Go duration from 0s to 5m0s, such as 30s`,
		"wait=6m":           `wait="6m": must be a Go duration from 0s to 5m0s, such as 30s`,
		"wait=":             `wait="": must be a Go duration from 0s to 5m0s, such as 30s`,
		"wait=30s&since=x":  `since="x": must be a whole number from 0, the transitions of an earlier answer`,
		"wait=30s&since=-1": `since="-1": must be a whole number from 0, the transitions of an earlier answer`,
		"wait=1h&since=1.5": `wait="1h": must be a Go duration from 0s to 5m0s, such as 30s` + "\n" + `since="1.5": must be a whole number from 0, the transitions of an earlier answer`,
	} {
		t.Run(q, func(t *testing.T) {
			code, _, body := get(t, client, srv.URL+"/leader?"+q)
			if code != http.StatusBadRequest || body != want+"\n" {
				t.Errorf("%d %q, want 400 %q", code, body, want)
			}
		})
	}
}

// Without streams, /leader answers at once and nothing holds a slot: a
// long-poll and /watch are refused with the reason, before any wait.
func TestHandlerWithoutStreams(t *testing.T) {
	h, fe, _ := newTestHub(t, nil)
	fe.set(leaderState("a", 1, t0.Add(time.Hour)))
	const off = "streams are off here: set X=true"
	srv, client := newServer(t, h.HandlerWithoutStreams(off))
	leaderJSON := `{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":1}` + "\n"
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/leader", http.StatusOK, leaderJSON},
		{"/leader?wait=0s&since=1", http.StatusOK, leaderJSON},
		{"/leader?wait=30s&since=1", http.StatusForbidden, off + "\n"},
		{"/leader?wait=1ns", http.StatusForbidden, off + "\n"},
		{"/leader?wait=abc", http.StatusBadRequest, `wait="abc": must be a Go duration from 0s to 5m0s, such as 30s` + "\n"},
		{"/watch", http.StatusForbidden, off + "\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := get(t, client, srv.URL+tc.path)
			if code != tc.code || body != tc.body {
				t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
			}
		})
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after refused streams, want 0", n)
	}
}

// A long-poll whose client leaves ends and gives its slot back.
func TestLongPollClientLeaves(t *testing.T) {
	h, _, fc := newTestHub(t, func(c *Config) { c.MaxClients = 1 })
	srv, client := newServer(t, h.Handler())
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/leader?wait=5m", nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitWaiters(t, fc, 1) // its timer: no leader, so the hub has none
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("a cancelled long-poll answered")
		}
		eventually(t, "slot given back", func() bool { h.own.mu.Lock(); defer h.own.mu.Unlock(); return h.own.n == 0 })
	}
}

// Run serves the NAIS API on its listener; when ctx ends, open streams end
// and the server shuts down without waiting for them.
func TestRunServesAndShutsDown(t *testing.T) {
	fe := &fakeElection{s: leaderState("a", 1, time.Now().Add(time.Hour))}
	fe.s.AcquireTime = t0
	h, err := New(Config{State: fe.State})
	if err != nil {
		t.Fatal(err)
	}
	fe.hub = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{}}
	if code, _, body := get(t, client, url+"/"); code != http.StatusOK || body != aJSON {
		t.Fatalf("GET /: %d %q", code, body)
	}
	s := openStream(t, client, url+"/sse")
	if got := s.next(t); got != "data: "+aJSON+"\n\n" {
		t.Fatalf("on connect: %q", got)
	}
	cancel()
	if got := s.next(t); got != "EOF" {
		t.Fatalf("after shutdown: %q, want the stream's end", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(hang):
		t.Fatal("Run did not return")
	}
	fe.set(election.State{Identity: "me"}) // after Run: ignored, and no panic
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener is still open")
	}
}

// The server's ReadTimeout and WriteTimeout cut neither a stream nor a
// long-poll off.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	h, fe, fc := newTestHub(t, nil)
	mux := http.NewServeMux()
	mux.Handle("/leader", h.Handler())
	mux.Handle("/", h.NAISHandler())
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	open := func(path string) *bufio.Reader {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		return bufio.NewReader(resp.Body)
	}
	stream := open("/sse")
	if f, _ := readFrame(stream); f != "data: {}\n\n" {
		t.Fatalf("on connect: %q", f)
	}
	longPoll := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(open("/leader?wait=5m&since=0"))
		longPoll <- string(b) + fmt.Sprint(err)
	}()
	waitWaiters(t, fc, 2)              // the stream's heartbeat and the long-poll's timer
	time.Sleep(300 * time.Millisecond) // past both timeouts, on the real clock the server uses
	fe.set(leaderState("a", 1, t0.Add(time.Hour)))
	if f, err := readFrame(stream); f != "data: "+aJSON+"\n\n" {
		t.Fatalf("stream after the server's timeouts: %q %v", f, err)
	}
	want := `{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":1}` + "\n<nil>"
	if got := <-longPoll; got != want {
		t.Fatalf("long-poll after the server's timeouts: %q, want %q", got, want)
	}
}
