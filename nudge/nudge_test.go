package nudge

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type poker struct {
	pokes  atomic.Int32
	refuse bool
}

func (p *poker) Poke() bool { p.pokes.Add(1); return !p.refuse }

func TestHandlerAnswersAcceptedOrTooManyRequests(t *testing.T) {
	for _, tc := range []struct {
		refuse bool
		want   int
	}{{false, http.StatusAccepted}, {true, http.StatusTooManyRequests}} {
		p := &poker{refuse: tc.refuse}
		rec := httptest.NewRecorder()
		Handler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader("ignored")))
		if rec.Code != tc.want || p.pokes.Load() != 1 {
			t.Errorf("refuse=%v: status %d after %d pokes, want %d after 1", tc.refuse, rec.Code, p.pokes.Load(), tc.want)
		}
	}
}

// TestSenderPostsAndRunWaitsForIt: Run, once its context ended, returns only
// after the nudge was answered.
func TestSenderPostsAndRunWaitsForIt(t *testing.T) {
	p := &poker{}
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, func(w http.ResponseWriter, r *http.Request) {
		<-release
		Handler(p).ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s := NewSender(Options{Timeout: 10 * time.Second, Log: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Nudge("next", strings.TrimPrefix(srv.URL, "http://"))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-done:
		t.Fatal("Run returned before the nudge was answered")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := p.pokes.Load(); n != 1 {
		t.Errorf("%d pokes, want 1", n)
	}
}

// TestSenderGivesUpAtItsTimeout: a standby that does not answer holds Run
// up no longer than the timeout.
func TestSenderGivesUpAtItsTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // never answered
		}
	}()
	t.Cleanup(func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})
	s := NewSender(Options{Timeout: 20 * time.Millisecond, Log: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Nudge("next", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waits for a nudge that timed out")
	}
}

func TestAddress(t *testing.T) {
	for _, tc := range []struct{ podIP, listen, want string }{
		{"10.0.0.7", ":8080", "10.0.0.7:8080"},
		{"10.0.0.7", "0.0.0.0:4041", "10.0.0.7:4041"},
		{"10.0.0.7", "[::]:4041", "10.0.0.7:4041"},
		{"10.0.0.7", "10.0.0.7:4041", "10.0.0.7:4041"},
		{"fd00::7", ":8080", "[fd00::7]:8080"},
		{"127.0.0.1", "127.0.0.1:9000", "127.0.0.1:9000"},
		{"10.0.0.7", "127.0.0.1:8080", ""}, // peers cannot reach it
		{"10.0.0.7", "localhost:8080", ""},
		{"", ":8080", ""},
		{"10.0.0.7", "bad", ""},
		{"10.0.0.7", ":0", ""},
	} {
		if got := Address(tc.podIP, tc.listen); got != tc.want {
			t.Errorf("Address(%q, %q) = %q, want %q", tc.podIP, tc.listen, got, tc.want)
		}
	}
}
