package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// countingProxy stands between one elector and the API server on loopback
// and counts what it asks: plain requests and watches apart. client-go sends
// no credentials to a plain-http server, so the proxy adds the token.
type countingProxy struct {
	URL      string
	srv      *http.Server
	requests atomic.Int64
	watches  atomic.Int64
}

type counts struct{ requests, watches int64 }

func (c counts) minus(o counts) counts {
	return counts{c.requests - o.requests, c.watches - o.watches}
}

func newCountingProxy(apiServer string, ca []byte, token string) (*countingProxy, error) {
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
	p := &countingProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
			p.watches.Add(1)
		} else {
			p.requests.Add(1)
		}
		r.Header.Set("Authorization", "Bearer "+token)
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *countingProxy) counts() counts {
	return counts{p.requests.Load(), p.watches.Load()}
}

func (p *countingProxy) Close() { _ = p.srv.Close() }
