package leaderhttp

import (
	"fmt"
	"net"
	"net/http"
	"sync"
)

// pool bounds the streams and long-polls that one listener serves at once:
// in all, so that the clients of one listener never take another's slots
// (the app's own /sse on LEADER_HTTP_ADDRESS is not starved by anyone on
// the pod network's health port), and per client address, so that one
// client cannot take all of them. Each idle stream costs about 31 KB of
// memory, measured; the caps keep the sidecar within its limit.
type pool struct {
	name      string // the listener, for the 503's text
	max       int
	perClient int // 0: no bound per address
	mu        sync.Mutex
	n         int
	by        map[string]int
}

func newPool(name string, max, perClient int) *pool {
	return &pool{name: name, max: max, perClient: perClient, by: map[string]int{}}
}

// acquire takes a slot for r, or answers 503 and reports false.
func (p *pool) acquire(w http.ResponseWriter, r *http.Request) bool {
	addr := clientAddress(r)
	p.mu.Lock()
	var why string
	switch {
	case p.n >= p.max:
		why = fmt.Sprintf("too many event streams and long-polls on %s (at most %d); try again later", p.name, p.max)
	case p.perClient > 0 && p.by[addr] >= p.perClient:
		why = fmt.Sprintf("too many event streams and long-polls from %s on %s (at most %d per client address); try again later", addr, p.name, p.perClient)
	default:
		p.n++
		p.by[addr]++
	}
	p.mu.Unlock()
	if why != "" {
		w.Header().Set("Retry-After", "5")
		http.Error(w, why, http.StatusServiceUnavailable)
		return false
	}
	return true
}

func (p *pool) release(r *http.Request) {
	addr := clientAddress(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.by[addr]--; p.by[addr] <= 0 {
		delete(p.by, addr)
	}
}

// clientAddress is the request's remote host, without its port.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
