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
	"sync"
	"sync/atomic"
)

// Proxy stands between one client and the API server on loopback: it counts
// what the client asks (plain requests and watches apart) and can cut it off.
// client-go sends no credentials to a plain-http server, so the proxy adds
// the token.
type Proxy struct {
	URL      string
	srv      *http.Server
	requests atomic.Int64
	watches  atomic.Int64
	down     atomic.Bool

	mu      sync.Mutex
	streams map[*http.Request]context.CancelFunc // requests in flight
}

// Counts are a client's requests so far.
type Counts struct{ Requests, Watches int64 }

// Minus is the difference of two counts.
func (c Counts) Minus(o Counts) Counts {
	return Counts{c.Requests - o.Requests, c.Watches - o.Watches}
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
	p := &Proxy{streams: map[*http.Request]context.CancelFunc{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "proxy is down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
			p.watches.Add(1)
		} else {
			p.requests.Add(1)
		}
		r.Header.Set("Authorization", "Bearer "+token)
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
		rp.ServeHTTP(w, r.WithContext(ctx))
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Counts returns the requests so far.
func (p *Proxy) Counts() Counts {
	return Counts{p.requests.Load(), p.watches.Load()}
}

// SetDown cuts the client off (every request answers 503 and open streams
// end) or lets it through again.
func (p *Proxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.srv.SetKeepAlivesEnabled(false)
		_ = p.closeStreams()
	} else {
		p.srv.SetKeepAlivesEnabled(true)
	}
}

// closeStreams ends every request in flight, watches included.
func (p *Proxy) closeStreams() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cancel := range p.streams {
		cancel()
	}
	return nil
}

// Close stops the proxy.
func (p *Proxy) Close() { _ = p.srv.Close() }
