package connlimit

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// listen serves a Listener with the bounds on loopback until the test
// ends, handing each accepted connection to the channel.
func listen(t *testing.T, max, perAddress int) (*Listener, <-chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := New(raw, max, perAddress)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return ln, accepted
}

// dialFrom connects to ln from the loopback address src.
func dialFrom(t *testing.T, ln net.Listener, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server ended c without a word.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), err != nil && !(errors.As(err, &ne) && ne.Timeout()):
		return true
	default:
		return false
	}
}

func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		name            string
		max, perAddress int
		from            []string // a connection from each, in order
		served          []bool   // whether each is served
	}{
		{"within both", 3, 2, []string{"127.0.0.1", "127.0.0.2", "127.0.0.1"}, []bool{true, true, true}},
		{"in all", 2, 0, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, []bool{true, true, false}},
		{"per address", 4, 2, []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2"}, []bool{true, true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, accepted := listen(t, tc.max, tc.perAddress)
			for i, src := range tc.from {
				c := dialFrom(t, ln, src)
				if tc.served[i] {
					select {
					case s := <-accepted:
						defer s.Close()
					case <-time.After(2 * time.Second):
						t.Fatalf("connection %d from %s was not accepted", i, src)
					}
				} else if !closedByServer(t, c) {
					t.Fatalf("connection %d from %s beyond the bounds (%d in all, %d per address) stayed open", i, src, tc.max, tc.perAddress)
				}
			}
			var want uint64
			for _, s := range tc.served {
				if !s {
					want++
				}
			}
			if got := ln.Refused(); got != want {
				t.Errorf("Refused() = %d, want %d", got, want)
			}
		})
	}
}

// TestClosingGivesTheSlotBack: a closed connection's slot serves the next
// client, once, however often the server closes it.
func TestClosingGivesTheSlotBack(t *testing.T) {
	ln, accepted := listen(t, 1, 1)
	dialFrom(t, ln, "127.0.0.1")
	first := <-accepted
	if c := dialFrom(t, ln, "127.0.0.1"); !closedByServer(t, c) {
		t.Fatal("a second connection was served while the only slot was taken")
	}
	first.Close()
	first.Close()
	if n := ln.Open(); n != 0 {
		t.Fatalf("Open() = %d after the only connection closed twice, want 0", n)
	}
	dialFrom(t, ln, "127.0.0.1")
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("the slot was not given back")
	}
}
