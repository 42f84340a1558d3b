package sidecar

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// TestHealthListensOnProbeAddress: with PROBE_ADDRESS set, the health
// endpoints listen there, and an address that cannot be listened on stops
// Run with an error naming PROBE_ADDRESS.
func TestHealthListensOnProbeAddress(t *testing.T) {
	c := newCluster(t)

	// A free port: listen, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig(t)
	cfg.ProbeAddress = addr
	r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Pods: c.CoreV1().Pods(ns), Log: quiet, Version: "test"})
	t.Cleanup(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var code int
	err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		code = resp.StatusCode
		return true, nil
	})
	if err != nil {
		t.Fatalf("nothing answers on PROBE_ADDRESS %s: %v", addr, err)
	}
	if code != http.StatusOK {
		t.Errorf("GET /healthz on PROBE_ADDRESS = %d, want 200", code)
	}

	// The same address again, while the first sidecar holds it.
	cfg2 := testConfig(t)
	cfg2.ProbeAddress = addr
	s2, err := New(cfg2, Deps{Leases: c.CoordinationV1().Leases(ns), Pods: c.CoreV1().Pods(ns), Log: quiet, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s2.watchStatusDir = false
	err = s2.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `PROBE_ADDRESS="`+addr+`"`) {
		t.Errorf("Run on a busy PROBE_ADDRESS = %v, want an error naming PROBE_ADDRESS and its value", err)
	}
}
