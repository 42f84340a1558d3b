package leaderterm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/utils/clock"
)

func TestSetEndsTheTermAndItsWrites(t *testing.T) {
	leading := true
	w := NewWish(func() bool { return leading })
	if ended := w.Set(true); !isClosed(ended) {
		t.Fatal("Set with no term running: the channel is not closed")
	}
	lead, gen := w.Get()
	if !lead || gen != 1 {
		t.Fatalf("Get() = %v, %d; want true, 1", lead, gen)
	}
	fenced := make(chan error, 1)
	started := make(chan struct{})
	term := w.Start(context.Background(), gen, func(ctx context.Context, gen int) {
		if err := w.Fence(ctx, gen); err != nil {
			t.Errorf("Fence in a running term: %v", err)
		}
		close(started)
		<-ctx.Done()
		fenced <- w.Fence(ctx, gen)
	})
	if term == nil || term.Gen != 1 {
		t.Fatalf("Start = %v, want the term of generation 1", term)
	}
	<-started
	ended := w.Set(false)
	<-ended
	if err := <-fenced; !errors.Is(err, ErrNotLeading) {
		t.Errorf("Fence after Set(false) = %v, want ErrNotLeading", err)
	}
	if _, gen := w.Get(); gen != 2 {
		t.Errorf("generation after a change = %d, want 2", gen)
	}
	if ended := w.Set(false); !isClosed(ended) {
		t.Error("Set without a change: the channel is not closed")
	}
	if _, gen := w.Get(); gen != 2 {
		t.Errorf("generation after no change = %d, want 2", gen)
	}
}

func TestFence(t *testing.T) {
	leading := true
	w := NewWish(func() bool { return leading })
	w.Set(true)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		gen     int
		leading bool
		want    error
	}{
		{"the running generation, leading", context.Background(), 1, true, nil},
		{"an older generation", context.Background(), 0, true, ErrNotLeading},
		{"the election lost the Lease", context.Background(), 1, false, ErrNotLeading},
		{"the term's context ended", cancelled, 1, true, ErrNotLeading},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leading = tc.leading
			if err := w.Fence(tc.ctx, tc.gen); !errors.Is(err, tc.want) && err != tc.want {
				t.Errorf("Fence = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStartRunsNothingForAChangedWish(t *testing.T) {
	w := NewWish(nil)
	w.Set(true)
	w.Set(false)
	w.Set(true) // generation 3
	for _, gen := range []int{1, 2} {
		if term := w.Start(context.Background(), gen, func(context.Context, int) { t.Error("ran the work of an old wish") }); term != nil {
			t.Errorf("Start(gen %d) = %v, want nil", gen, term)
		}
	}
	w.Set(false)
	if term := w.Start(context.Background(), 4, func(context.Context, int) { t.Error("ran while following") }); term != nil {
		t.Error("Start while following ran a term")
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := clock.RealClock{}
		start := time.Now()
		if !Sleep(context.Background(), clk, time.Second, nil) || time.Since(start) != time.Second {
			t.Errorf("Sleep(1s) took %s", time.Since(start))
		}
		wake := make(chan struct{}, 1)
		wake <- struct{}{}
		start = time.Now()
		if !Sleep(context.Background(), clk, time.Hour, wake) || time.Since(start) != 0 {
			t.Errorf("Sleep with a wake took %s", time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if Sleep(ctx, clk, time.Hour, nil) {
			t.Error("Sleep with an ended context reported true")
		}
	})
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestRunFollowsAfterTheTermEnded: Run follows a generation only once the
// term before it returned, and once it is done, not again.
func TestRunFollowsAfterTheTermEnded(t *testing.T) {
	w := NewWish(nil)
	var mu sync.Mutex
	var events []string
	say := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	tries := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(ctx context.Context, gen int) {
			say(fmt.Sprintf("lead %d", gen))
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // its last requests return
			say(fmt.Sprintf("term %d ended", gen))
		}, func(_ context.Context, gen int) bool {
			tries++
			say(fmt.Sprintf("follow %d try %d", gen, tries))
			return tries%2 == 0 // each generation fails once, then is done
		})
	}()
	wait := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			got := len(events)
			mu.Unlock()
			if got >= n {
				return
			}
		}
		t.Fatalf("events = %v, want %d", events, n)
	}
	wait(2) // gen 0 follows twice
	w.Set(true)
	wait(3)
	w.Set(false)
	wait(6)
	cancel()
	<-done
	want := []string{"follow 0 try 1", "follow 0 try 2", "lead 1", "term 1 ended", "follow 2 try 3", "follow 2 try 4"}
	if !slices.Equal(events, want) {
		t.Errorf("events = %v, want %v", events, want)
	}
}
