package takeover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

func TestPeerAddress(t *testing.T) {
	for _, tc := range []struct{ own, peerIP, want string }{
		{"10.0.0.7:8080", "10.0.0.9", "10.0.0.9:8080"},
		{"[fd00::7]:8080", "fd00::9", "[fd00::9]:8080"},
		{"", "10.0.0.9", ""}, // this replica takes no offers: nor do its peers
		{"10.0.0.7:8080", "", ""},
	} {
		if got := PeerAddress(tc.own, tc.peerIP); got != tc.want {
			t.Errorf("PeerAddress(%q, %q) = %q, want %q", tc.own, tc.peerIP, got, tc.want)
		}
	}
}

func TestAddress(t *testing.T) {
	for _, tc := range []struct{ podIP, listen, want string }{
		{"10.0.0.7", ":8080", "10.0.0.7:8080"},
		{"10.0.0.7", "0.0.0.0:4041", "10.0.0.7:4041"},
		{"10.0.0.7", "[::]:4041", "10.0.0.7:4041"},
		{"10.0.0.7", "10.0.0.7:4041", "10.0.0.7:4041"},
		{"fd00::7", ":8080", "[fd00::7]:8080"},
		{"127.0.0.1", "127.0.0.1:9000", "127.0.0.1:9000"},
		{"10.0.0.7", "127.0.0.1:8080", ""}, // peers cannot reach it
		{"10.0.0.7", "localhost:8080", ""},
		{"", ":8080", ""},
		{"10.0.0.7", "bad", ""},
		{"10.0.0.7", ":0", ""},
	} {
		if got := Address(tc.podIP, tc.listen); got != tc.want {
			t.Errorf("Address(%q, %q) = %q, want %q", tc.podIP, tc.listen, got, tc.want)
		}
	}
}

// taker answers TakeOver with err and records the offers it got.
type taker struct {
	err    error
	offers []string
}

func (t *taker) TakeOver(_ context.Context, offer []byte) error {
	t.offers = append(t.offers, string(offer))
	return t.err
}

// TestHandOffAnswers: the standby's answer reaches the leader as nil only
// when it took the Lease; a refusal, a failed write and a standby that is
// not there are errors saying why.
func TestHandOffAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		want    int
		wantErr string
	}{
		{"taken", nil, http.StatusOK, ""},
		{"refused", fmt.Errorf("%w: the signature is not the holder's", election.ErrOfferRefused), http.StatusConflict, "409 Conflict: take-over offer refused: the signature is not the holder's"},
		{"write failed", errors.New("take over lease ns/l: 500"), http.StatusServiceUnavailable, "503 Service Unavailable: take over lease ns/l: 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := &taker{err: tc.err}
			mux := http.NewServeMux()
			mux.Handle("POST "+Path, Handler(tk))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			rec := httptest.NewRecorder()
			Handler(tk).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(`{"offer":{}}`)))
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d", rec.Code, tc.want)
			}
			s := NewSender(Options{})
			err := s.HandOff(context.Background(), "next", strings.TrimPrefix(srv.URL, "http://"), []byte(`{"offer":{}}`))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("HandOff: err = %v, want %q", err, tc.wantErr)
			}
			if len(tk.offers) != 2 || tk.offers[1] != `{"offer":{}}` {
				t.Errorf("offers taken = %q, want the body twice", tk.offers)
			}
		})
	}
	t.Run("nobody there", func(t *testing.T) {
		port, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := port.Addr().String()
		port.Close()
		err = NewSender(Options{}).HandOff(context.Background(), "next", addr, nil)
		if err == nil || !strings.Contains(err.Error(), "offer the lease to next at "+addr) {
			t.Errorf("HandOff to a closed port: err = %v, want one naming the standby and its address", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		tk := &taker{}
		rec := httptest.NewRecorder()
		Handler(tk).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(strings.Repeat("x", maxOffer+1))))
		if rec.Code != http.StatusRequestEntityTooLarge || len(tk.offers) != 0 {
			t.Errorf("status %d with %d offers taken, want 413 and none", rec.Code, len(tk.offers))
		}
	})
}

// TestHandOffWaitsWithinItsContext: a successor that does not answer holds
// the leader no longer than the leader's context, not the dial timeout.
func TestHandOffWaitsWithinItsContext(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	s := NewSender(Options{DialTimeout: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.HandOff(ctx, "next", strings.TrimPrefix(srv.URL, "http://"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HandOff: err = %v, want the context's deadline", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("HandOff gave up after %s, before its context's 300ms", took)
	}
}
