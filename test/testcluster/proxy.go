package testcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy stands between one client and the API server on loopback: it counts
// what the client asks (plain requests and watches apart), and it can cut the
// client off or slow it down, open streams included. client-go sends no
// credentials to a plain-http server, so the proxy adds the token.
type Proxy struct {
	URL      string
	srv      *http.Server
	requests atomic.Int64
	watches  atomic.Int64
	conns    atomic.Int64

	mu       sync.Mutex
	mode     Mode
	delay    time.Duration
	delayOf  Which
	changed  chan struct{}                        // closed and replaced when the mode changes
	streams  map[*http.Request]context.CancelFunc // requests in flight
	open     map[net.Conn]struct{}                // client connections
	observer func(Request)
	answered func(Request, int)
}

// Mode is what a Proxy does with the client's traffic.
type Mode int

// The modes of a Proxy.
const (
	// Pass forwards everything.
	Pass Mode = iota
	// Unavailable answers every request 503 and ends open streams, as an
	// overloaded load balancer in front of the API server would.
	Unavailable
	// Blackhole accepts connections and requests and never answers: new
	// requests hang, and responses in flight (watch streams too) stall
	// where they are, as when packets are dropped. When the mode ends,
	// held requests whose client still waits are forwarded, late.
	Blackhole
	// Reset closes every client connection with a TCP reset, those in
	// flight at once and new ones as soon as they are accepted.
	Reset
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Unavailable:
		return "unavailable"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Which requests a delay applies to.
type Which int

// The requests a delay can apply to.
const (
	AllRequests Which = iota
	// PodRequests are requests on pods (the role label), not on the Lease.
	PodRequests
)

// Request is one request as the proxy received it, before any fault.
type Request struct {
	Time   time.Time
	Method string
	Path   string
	Watch  bool
}

// Counts are a client's requests so far, and the TCP connections it opened.
type Counts struct{ Requests, Watches, Conns int64 }

// Minus is the difference of two counts.
func (c Counts) Minus(o Counts) Counts {
	return Counts{c.Requests - o.Requests, c.Watches - o.Watches, c.Conns - o.Conns}
}

// NewProxy starts a proxy to apiServer that authenticates with token.
func NewProxy(apiServer string, ca []byte, token string) (*Proxy, error) {
	target, err := url.Parse(apiServer)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no CA certificate for the API server")
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	rp.FlushInterval = -1 // stream watch events at once
	// A client that goes away mid-watch (a terminated replica) is expected.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	p := &Proxy{
		changed: make(chan struct{}),
		streams: map[*http.Request]context.CancelFunc{},
		open:    map[net.Conn]struct{}{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.serve(rp, token, w, r)
		}),
		ConnState: p.trackConn,
	}
	go func() { _ = p.srv.Serve(&resetListener{Listener: ln, p: p}) }()
	return p, nil
}

func (p *Proxy) serve(rp *httputil.ReverseProxy, token string, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("watch")
	watch := q == "true" || q == "1"
	if watch {
		p.watches.Add(1)
	} else {
		p.requests.Add(1)
	}
	p.mu.Lock()
	observe, answered := p.observer, p.answered
	p.mu.Unlock()
	req := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Watch: watch}
	if observe != nil {
		observe(req)
	}
	hw := &holdWriter{ResponseWriter: w, p: p}
	if answered != nil {
		defer func() { answered(req, hw.status) }()
	}
	ctx, cancel := context.WithCancel(r.Context())
	p.mu.Lock()
	p.streams[r] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.streams, r)
		p.mu.Unlock()
		cancel()
	}()

	if d := p.delayFor(r); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
	}
	if !p.passable(ctx) {
		return // the client gave up while held in a blackhole
	}
	switch p.Mode() {
	case Unavailable:
		http.Error(w, "proxy is down", http.StatusServiceUnavailable)
		return
	case Reset:
		p.resetHijacked(w)
		return
	}
	r.Header.Set("Authorization", "Bearer "+token)
	hw.ctx = ctx
	rp.ServeHTTP(hw, r.WithContext(ctx))
}

// delayFor is the delay that applies to r now.
func (p *Proxy) delayFor(r *http.Request) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delay <= 0 {
		return 0
	}
	if p.delayOf == PodRequests && !isPodRequest(r.URL.Path) {
		return 0
	}
	return p.delay
}

// isPodRequest reports whether path names pods of the core API, as in
// /api/v1/namespaces/ns/pods/name.
func isPodRequest(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	return len(parts) >= 5 && parts[0] == "api" && parts[2] == "namespaces" && parts[4] == "pods"
}

// passable waits while the proxy is a blackhole; false when ctx ended first.
func (p *Proxy) passable(ctx context.Context) bool {
	for {
		p.mu.Lock()
		mode, changed := p.mode, p.changed
		p.mu.Unlock()
		if mode != Blackhole {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// resetHijacked closes the request's connection with a TCP reset.
func (p *Proxy) resetHijacked(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	resetConn(conn)
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST, not FIN
	}
	_ = c.Close()
}

func (p *Proxy) trackConn(c net.Conn, s http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s {
	case http.StateNew:
		p.open[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.open, c)
	}
}

// resetListener counts connections and resets new ones in Reset mode.
type resetListener struct {
	net.Listener
	p *Proxy
}

func (l *resetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.p.conns.Add(1)
		if l.p.Mode() != Reset {
			return c, nil
		}
		resetConn(c)
	}
}

// holdWriter stalls a response while the proxy is a blackhole.
type holdWriter struct {
	http.ResponseWriter
	p      *Proxy
	ctx    context.Context
	status int // what the API server answered; 0: nothing yet
}

func (h *holdWriter) WriteHeader(code int) {
	h.status = code
	if h.p.passable(h.ctx) {
		h.ResponseWriter.WriteHeader(code)
	}
}

func (h *holdWriter) Write(b []byte) (int, error) {
	if !h.p.passable(h.ctx) {
		return 0, h.ctx.Err()
	}
	return h.ResponseWriter.Write(b)
}

func (h *holdWriter) Flush() {
	if h.p.passable(h.ctx) {
		_ = http.NewResponseController(h.ResponseWriter).Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (h *holdWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Counts returns the requests so far, whatever the mode did with them.
func (p *Proxy) Counts() Counts {
	return Counts{p.requests.Load(), p.watches.Load(), p.conns.Load()}
}

// Mode is the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the mode. Blackhole stalls what is in flight; Reset and
// Unavailable end it.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	var conns []net.Conn
	if m == Reset {
		for c := range p.open {
			conns = append(conns, c)
		}
	}
	if m == Unavailable {
		for _, cancel := range p.streams {
			cancel()
		}
	}
	p.mu.Unlock()
	p.srv.SetKeepAlivesEnabled(m == Pass || m == Blackhole)
	for _, c := range conns {
		resetConn(c)
	}
}

// SetDelay delays each request of the kind which by d before it is
// forwarded; 0 ends the delay.
func (p *Proxy) SetDelay(d time.Duration, which Which) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.delayOf = d, which
}

// Observe has f called with each request as it arrives, before the mode or
// a delay applies, on the request's goroutine; nil stops it.
func (p *Proxy) Observe(f func(Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observer = f
}

// ObserveAnswers has f called with each request that reached the API
// server and the status code it answered (0 when the client or a fault cut
// it off first), once the answer is done; nil stops it.
func (p *Proxy) ObserveAnswers(f func(Request, int)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answered = f
}

// SetDown cuts the client off (every request answers 503 and open streams
// end) or lets it through again.
func (p *Proxy) SetDown(down bool) {
	if down {
		p.SetMode(Unavailable)
	} else {
		p.SetMode(Pass)
	}
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.SetMode(Pass) // release held requests so that Close does not wait on them
	_ = p.srv.Close()
}
