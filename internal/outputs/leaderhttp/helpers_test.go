package leaderhttp

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/testutil"
)

// t0 is the fake clock's start, and the acquire time the tests give leaders.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// hang bounds waits that only a bug makes long; it is no timing assertion.
const hang = 10 * time.Second

// fakeElection is the election the hub reads and observes: set changes the
// State and tells the hub, like the election loop; extend changes it
// silently, like a renew.
type fakeElection struct {
	mu  sync.Mutex
	s   election.State
	hub *Hub
}

func (f *fakeElection) State() election.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func (f *fakeElection) set(s election.State) {
	f.extend(s)
	f.hub.Observe(s)
}

func (f *fakeElection) extend(s election.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
}

// newTestHub returns a running hub on a fake clock, stopped at cleanup.
func newTestHub(t *testing.T, tweak func(*Config)) (*Hub, *fakeElection, *clocktesting.FakeClock) {
	t.Helper()
	fc := clocktesting.NewFakeClock(t0)
	fe := &fakeElection{s: election.State{Identity: "me"}}
	cfg := Config{State: fe.State, Clock: fc, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fe.hub = h
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h, fe, fc
}

// leaderState is the State of a follower that sees b lead until HeldUntil.
func leaderState(leader string, transitions int, heldUntil time.Time) election.State {
	return election.State{Identity: "me", Leader: leader, Transitions: transitions, AcquireTime: t0, HeldUntil: heldUntil}
}

// stream is an SSE client: frames are the messages it reads, each with its
// blank line, in order.
type stream struct {
	resp   *http.Response
	frames chan string
	cancel context.CancelFunc
	done   chan struct{}
}

func openStream(t *testing.T, client *http.Client, url string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{resp: resp, frames: make(chan string, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.frames)
		r := bufio.NewReader(resp.Body)
		for {
			f, err := readFrame(r)
			if err != nil {
				return
			}
			s.frames <- f
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// next returns the next frame, or "EOF" once the stream ended.
func (s *stream) next(t *testing.T) string {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			return "EOF"
		}
		return f
	case <-time.After(hang):
		t.Fatal("no message from the stream")
		return ""
	}
}

// readFrame reads lines up to and including a blank one.
func readFrame(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// eventually polls cond until it holds, failing after hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, time.Millisecond, hang, what, cond)
}

// waitWaiters waits until the fake clock has n timers and tickers.
func waitWaiters(t *testing.T, fc *clocktesting.FakeClock, n int) {
	t.Helper()
	eventually(t, "fake clock waiters", func() bool { return fc.Waiters() == n })
}

// settleGoroutines waits until at most base goroutines run.
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, hang, true,
		func(context.Context) (bool, error) { return runtime.NumGoroutine() <= base, nil })
	if err != nil {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
}

func newServer(t *testing.T, h http.Handler) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return srv, &http.Client{Transport: tr}
}

func get(t *testing.T, client *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
