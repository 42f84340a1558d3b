package testutil

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferTakesConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	if got := b.Lines("line "); len(got) != 8 {
		t.Errorf("Lines = %q, want 8 lines", got)
	}
	if got := b.Lines("line 3"); !slices.Equal(got, []string{"line 3"}) {
		t.Errorf("Lines(line 3) = %q", got)
	}
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	start := time.Now()
	Eventually(t, time.Millisecond, time.Second, "20ms passed", func() bool { return time.Since(start) >= 20*time.Millisecond })
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("returned after %s, before the condition held", d)
	}
}
