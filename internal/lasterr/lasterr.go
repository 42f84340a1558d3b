// Package lasterr remembers the latest error of a long-running part that
// retries, and logs each distinct error once and the recovery once, so that a
// part failing on every turn does not flood the log.
package lasterr

import (
	"log/slog"
	"sync"
)

// Tracker holds the latest error. The zero value is not usable; use New.
type Tracker struct {
	log        *slog.Logger
	errMsg, ok string
	onError    func(error)

	mu   sync.Mutex
	last string
}

// New returns a Tracker that logs an error as errMsg (at Error level) and a
// recovery as okMsg (at Info level), each with the error text.
func New(log *slog.Logger, errMsg, okMsg string) *Tracker {
	return &Tracker{log: log, errMsg: errMsg, ok: okMsg}
}

// OnError makes Note call f with every error, repeated ones too, as a
// counter needs. Call it before the first Note. It returns t.
func (t *Tracker) OnError(f func(error)) *Tracker {
	t.onError = f
	return t
}

// Note records err, nil meaning recovered. It logs when the text changed and
// reports whether it did.
func (t *Tracker) Note(err error) bool {
	msg := ""
	if err != nil {
		msg = err.Error()
		if t.onError != nil {
			t.onError(err)
		}
	}
	t.mu.Lock()
	prev := t.last
	t.last = msg
	t.mu.Unlock()
	switch {
	case msg == prev:
		return false
	case err != nil:
		t.log.Error(t.errMsg, "err", err)
	default:
		t.log.Info(t.ok, "after", prev)
	}
	return true
}

// Last is the text of the latest error, empty once recovered.
func (t *Tracker) Last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}
