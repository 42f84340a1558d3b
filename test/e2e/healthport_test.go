package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/health"
)

// TestHealthStreamsAreOptIn: the real binary serves GET /leader on the
// health port by default and refuses /watch and a long-poll, naming the
// variable; with HEALTH_STREAMS=true, /watch streams each change.
func TestHealthStreamsAreOptIn(t *testing.T) {
	f := newFleet(t)
	f.add(1)
	first := f.waitLeader(30*time.Second, false)
	f.add(1, "HEALTH_STREAMS=true")
	off, on := f.byPod("replica-0"), f.byPod("replica-1")
	if !eventually(10*time.Second, func() bool { st, err := on.Status(); return err == nil && st["leader"] == first }) {
		t.Fatalf("replica-1 never named %s on /status", first)
	}

	code, body, err := off.Get("/leader")
	var l leaderJSON
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil || l.Name != first {
		t.Errorf("GET /leader without HEALTH_STREAMS: %d %q %v, want 200 naming %s", code, body, err, first)
	}
	for _, path := range []string{"/watch", "/leader?wait=30s&name=" + first} {
		code, body, err := off.Get(path)
		if err != nil || code != http.StatusForbidden || !strings.Contains(body, "set HEALTH_STREAMS=true") {
			t.Errorf("GET %s without HEALTH_STREAMS: %d %q %v, want 403 naming HEALTH_STREAMS=true", path, code, body, err)
		}
	}

	stream := subscribe(t, on.HealthURL()+"/watch")
	if got := stream.next(t, "", 5*time.Second); got != first {
		t.Fatalf("/watch with HEALTH_STREAMS=true named %q first, want %s", got, first)
	}
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	if got := stream.next(t, first, 20*time.Second); got == "" {
		got = stream.next(t, "", 20*time.Second) // "no leader" may come between
		if got != "replica-1" {
			t.Errorf("/watch after %s's SIGTERM named %q, want replica-1", first, got)
		}
	} else if got != "replica-1" {
		t.Errorf("/watch after %s's SIGTERM named %q, want replica-1", first, got)
	}
}

// TestHealthPortBoundsConnections: the real binary holds at most
// health.MaxConnectionsPerAddress connections from one client address; one
// more is closed unanswered, while another address (the kubelet's) is still
// served, and a slot given back is taken again.
func TestHealthPortBoundsConnections(t *testing.T) {
	f := newFleet(t)
	f.add(1)
	f.waitLeader(30*time.Second, false)
	s := f.byPod("replica-0")
	addr := strings.TrimPrefix(s.HealthURL(), "http://")

	// Each held connection has had one request answered, so the server has
	// accepted it; it then idles in keep-alive.
	held := make([]net.Conn, 0, health.MaxConnectionsPerAddress)
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range health.MaxConnectionsPerAddress {
		c, code, err := dialAndGet(addr, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("connection %d of %d from one address: %d %v, want 200", i+1, health.MaxConnectionsPerAddress, code, err)
		}
		held = append(held, c)
	}
	if c, code, err := dialAndGet(addr, nil); err == nil {
		c.Close()
		t.Fatalf("connection %d from one address was answered %d, want it closed unanswered", health.MaxConnectionsPerAddress+1, code)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d from one address: no answer and not closed within 5s", health.MaxConnectionsPerAddress+1)
	}
	other := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	if c, code, err := dialAndGet(addr, other); err != nil || code != http.StatusOK {
		t.Errorf("/healthz from %s while 127.0.0.1 holds its bound: %d %v, want 200", other.IP, code, err)
	} else {
		c.Close()
	}
	held[0].Close()
	held = held[1:]
	var code int
	var err error
	if !eventually(5*time.Second, func() bool {
		var c net.Conn
		if c, code, err = dialAndGet(addr, nil); err == nil {
			held = append(held, c)
		}
		return err == nil && code == http.StatusOK
	}) {
		t.Errorf("after one of its connections closed, 127.0.0.1 got no new one: %d %v", code, err)
	}
}

// dialAndGet connects to addr (from local, when not nil), sends GET
// /healthz with keep-alive, and returns the open connection and the
// answer's status; an error when the server closed the connection
// unanswered or gave no answer within 5s.
func dialAndGet(addr string, local *net.TCPAddr) (net.Conn, int, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")); err != nil {
		c.Close()
		return nil, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, resp.StatusCode, nil
}
