package testcluster

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortAvoidsTheEphemeralRange checks that FreePort hands out ports
// an outgoing connection cannot take, each once, as many as a bench at
// N=200 asks for, and that they can be bound on all addresses as the
// sidecar binds HEALTH_PORT.
func TestFreePortAvoidsTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 500 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < portFloor || port >= low {
			t.Fatalf("FreePort() = %d, want in [%d, %d), below the ephemeral range", port, portFloor, low)
		}
		if seen[port] {
			t.Fatalf("FreePort() = %d twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("FreePort() = %d, which cannot be bound: %v", port, err)
		}
		l.Close()
	}
}
