package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// TestLeaderAPI: the leader API on the health listener (/leader, /watch)
// and on its own (the NAIS API), served by a real sidecar over loopback.
func TestLeaderAPI(t *testing.T) {
	c := newCluster(t)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	healthLn, naisLn := listen(), listen()
	cfg := testConfig(t)
	cfg.HealthStreams = true
	r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: healthLn, LeaderHTTP: naisLn})
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		r.cancel()
		return <-r.done
	}
	t.Cleanup(func() { _ = stop() })
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	get := func(url string) (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	nais, health := "http://"+naisLn.Addr().String(), "http://"+healthLn.Addr().String()

	var body string
	var err error
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		body, err = get(nais + "/")
		return err == nil && strings.Contains(body, `"name":"pod-a"`), nil
	})
	if err != nil {
		t.Fatalf("the NAIS API never named the leader: %q %v", body, err)
	}
	acquired := r.s.elector.State().AcquireTime.UTC().Format(time.RFC3339)
	if want := `{"name":"pod-a","last_update":"` + acquired + `"}`; body != want {
		t.Errorf("GET / on LEADER_HTTP_ADDRESS: %s, want %s", body, want)
	}
	var l struct {
		Name        string `json:"name"`
		IsLeader    bool   `json:"is_leader"`
		Identity    string `json:"identity"`
		Transitions int    `json:"transitions"`
	}
	body, err = get(health + "/leader")
	if err != nil || json.Unmarshal([]byte(body), &l) != nil || l.Name != "pod-a" || !l.IsLeader || l.Identity != "pod-a" {
		t.Errorf("GET /leader on the health port: %q %v, want pod-a leading", body, err)
	}
	if body, err := get(health + "/status"); err != nil || !strings.Contains(body, `"is_leader": true`) {
		t.Errorf("/status next to the leader API: %q %v", body, err)
	}

	// The streams hear the step-down at shutdown, then end; Run returns
	// without waiting for them.
	streams := map[string]*bufio.Reader{}
	for _, url := range []string{nais + "/sse", health + "/watch"} {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		streams[url] = bufio.NewReader(resp.Body)
	}
	for url, r := range streams {
		if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, `"name":"pod-a"`) {
			t.Errorf("%s on connect: %q %v", url, line, err)
		}
		r.ReadString('\n')
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for url, r := range streams {
		rest, err := io.ReadAll(r)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v", url, err)
		}
		if !strings.HasPrefix(string(rest), "data: {") || strings.Contains(string(rest), `"name"`) {
			t.Errorf("%s after the step-down: %q, want no leader named", url, rest)
		}
	}
}

// TestLeaderLongPollSeesResignation: a long-poll on /leader answers when
// this replica stops leading.
func TestLeaderLongPollSeesResignation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		cfg.HealthStreams = true
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		h := r.s.handler()
		st := r.s.elector.State()
		if !st.IsLeader {
			t.Fatal("pod-a does not lead")
		}
		rec := httptest.NewRecorder()
		answered := make(chan struct{})
		go func() {
			defer close(answered)
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/leader?wait=1m&name=pod-a&since="+strconv.Itoa(st.Transitions), nil))
		}()
		synctest.Wait()
		select {
		case <-answered:
			t.Fatalf("answered before any change: %s", rec.Body)
		default:
		}
		r.s.elector.Resign(errors.New("test"))
		<-answered
		if body := rec.Body.String(); strings.Contains(body, `"name"`) || !strings.Contains(body, `"is_leader":false`) {
			t.Errorf("long-poll after resigning: %s, want no leader", body)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestHealthStreamsAreOptIn: without HEALTH_STREAMS, the health listener,
// open to the pod network, answers /leader at once and refuses /watch and a
// long-poll with how to turn them on; nothing is held open.
func TestHealthStreamsAreOptIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := start(t, testConfig(t), newCluster(t), newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		h := r.s.handler()
		for _, tc := range []struct {
			path string
			code int
			want string
		}{
			{"/leader", http.StatusOK, `"name":"pod-a"`},
			{"/leader?wait=1m&name=pod-a", http.StatusForbidden, "set HEALTH_STREAMS=true"},
			{"/watch", http.StatusForbidden, "set HEALTH_STREAMS=true"},
		} {
			rec := httptest.NewRecorder()
			// Bounded, so that a stream or long-poll served by mistake ends.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, tc.path, nil))
			cancel()
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("GET %s: %d %q, want %d with %q", tc.path, rec.Code, rec.Body, tc.code, tc.want)
			}
		}
		if n := r.s.leaders.Subscribers(); n != 0 {
			t.Errorf("%d subscribers, want 0", n)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
