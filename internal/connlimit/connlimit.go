// Package connlimit bounds the connections a listener holds open, in all and
// per client address. A connection beyond a bound is closed as it is
// accepted, before a byte is read from it, so that a flood of connections
// costs the server no goroutine and no buffers: its memory stays bounded
// however many clients connect at once, and one client address cannot take
// every slot from the others (such as the kubelet's probes).
package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
)

// Listener is a net.Listener that serves at most Max connections at once,
// and at most PerAddress from one client address (0: no bound per address).
type Listener struct {
	net.Listener
	max, perAddress int

	mu      sync.Mutex
	open    int
	byAddr  map[string]int
	refused atomic.Uint64
}

// New wraps ln. max must be positive.
func New(ln net.Listener, max, perAddress int) *Listener {
	return &Listener{Listener: ln, max: max, perAddress: perAddress, byAddr: map[string]int{}}
}

// Accept returns the next connection within the bounds, closing every one
// beyond them on the way.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := host(c.RemoteAddr())
		if l.take(addr) {
			return &conn{Conn: c, release: func() { l.put(addr) }}, nil
		}
		l.refused.Add(1)
		_ = c.Close() // nothing was read or written: the client sees the connection end
	}
}

// Refused is how many connections were closed for a bound so far.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Open is how many connections are open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) take(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || (l.perAddress > 0 && l.byAddr[addr] >= l.perAddress) {
		return false
	}
	l.open++
	l.byAddr[addr]++
	return true
}

func (l *Listener) put(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// host is a's IP without its port; the whole address where it has none.
func host(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// conn gives its slot back once, on the first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
