// Package testutil holds the helpers that the product's tests share: a log
// buffer that goroutines may write while a test reads it, and a poll until a
// condition holds. It is imported by tests only.
package testutil

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// SyncBuffer is a log destination that goroutines may share with the test
// that reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines are the lines written so far that contain substr.
func (b *SyncBuffer) Lines(substr string) []string {
	var out []string
	for l := range strings.SplitSeq(b.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// Eventually polls cond every interval until it holds, and fails the test,
// naming what it waited for, once timeout has passed.
func Eventually(t testing.TB, interval, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out after %s waiting until %s", timeout, what)
	}
}
