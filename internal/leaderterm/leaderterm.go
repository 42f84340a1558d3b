// Package leaderterm is what the outputs that write to the API while this
// replica leads (the role label, the EndpointSlice) share: the wish to lead,
// by generation; the running term of the leader's work, ended at once when
// the wish changes; the fence a write passes right before it is sent; and
// the back-off and sleep of their retries.
//
// The fence is what makes a step-down safe: Wish.Set changes the generation
// and cancels the running term under one lock, and Wish.Fence checks the
// generation (and the election's Leading) under the same lock, so a write
// that passes the fence was sent before the step-down began.
package leaderterm

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// ErrNotLeading stops a write whose term has ended.
var ErrNotLeading = errors.New("no longer leading")

// Wish is the wish to lead of one output, by generation, and its running
// term. Its zero value wants to follow, at generation 0; leading, if set, is
// the election's Leading, which Fence checks too.
type Wish struct {
	leading func() bool

	mu      sync.Mutex
	lead    bool
	gen     int
	running *Term
	wake    chan struct{}
}

// NewWish returns a Wish that wants to follow; leading may be nil.
func NewWish(leading func() bool) *Wish {
	return &Wish{leading: leading, wake: make(chan struct{}, 1)}
}

// Set records the wish and wakes Wake's reader. A change starts a new
// generation and ends the running term at once: its context is cancelled
// under the lock Fence takes, so none of its writes passes the fence after
// Set. It returns a channel closed once that term's work has returned
// (closed already when none ran).
func (w *Wish) Set(lead bool) (ended <-chan struct{}) {
	w.mu.Lock()
	done := closed
	if w.lead != lead {
		w.lead, w.gen = lead, w.gen+1
		if t := w.running; t != nil {
			t.cancel()
			done, w.running = t.done, nil
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return done
}

// Get returns the wish and its generation.
func (w *Wish) Get() (lead bool, gen int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lead, w.gen
}

// Wake receives after every Set.
func (w *Wish) Wake() <-chan struct{} { return w.wake }

// Fence returns ErrNotLeading unless a write of the term of gen may be sent
// now: ctx has not ended, gen is still the wish's generation, and the
// election, if it is asked, still leads.
func (w *Wish) Fence(ctx context.Context, gen int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil || w.gen != gen || (w.leading != nil && !w.leading()) {
		return ErrNotLeading
	}
	return nil
}

// Start runs work in a goroutine of its own as the term of gen, with a
// context that Set cancels, unless the wish is no longer to lead at gen:
// then it returns nil and runs nothing.
func (w *Wish) Start(ctx context.Context, gen int, work func(ctx context.Context, gen int)) *Term {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.lead || w.gen != gen {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &Term{Gen: gen, cancel: cancel, done: make(chan struct{})}
	w.running = t
	go func() {
		defer close(t.done)
		defer cancel()
		work(ctx, gen)
		w.mu.Lock()
		if w.running == t {
			w.running = nil
		}
		w.mu.Unlock()
	}()
	return t
}

// Run runs lead as the term of each generation that wants to lead, and
// follow (if not nil) for each generation that wants to follow, until ctx
// ends. A term ends when the wish changes: Set cancels it, and Run waits
// until its work returned before it follows, so that follow's writes come
// after all of the term's. follow returns true once it is done for its
// generation; false calls it again at once (it waits out its own back-off).
func (w *Wish) Run(ctx context.Context, lead func(ctx context.Context, gen int), follow func(ctx context.Context, gen int) bool) {
	var term *Term
	followed := -1
	defer func() {
		if term != nil {
			term.End()
		}
	}()
	for ctx.Err() == nil {
		wantLead, gen := w.Get()
		if term != nil && term.Gen != gen {
			term.End()
			term = nil
		}
		switch {
		case wantLead && term == nil:
			term = w.Start(ctx, gen, lead)
			continue // nil: the wish changed meanwhile
		case !wantLead && follow != nil && followed < gen:
			if follow(ctx, gen) {
				followed = gen
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		}
	}
}

// Term is one running term of the leader's work.
type Term struct {
	// Gen is the wish's generation the term works for.
	Gen    int
	cancel context.CancelFunc
	done   chan struct{}
}

// End cancels the term and waits until its work has returned.
func (t *Term) End() {
	t.cancel()
	<-t.done
}

// Done is closed once the term's work has returned.
func (t *Term) Done() <-chan struct{} { return t.done }

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Backoff is the retries' back-off: from first, doubling with 20 % jitter,
// at most 10 s, without end.
func Backoff(first time.Duration) wait.Backoff {
	return wait.Backoff{Duration: first, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
}

// Sleep waits d on clk, or less if wake receives (nil: never); false if ctx
// ended first.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration, wake <-chan struct{}) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-wake:
	}
	return true
}
