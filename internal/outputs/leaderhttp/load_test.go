package leaderhttp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/procstat"
)

// The load test: 500 SSE subscribers across 10 handovers; each
// sees every change in order; resident memory and goroutines are back at
// their baseline after the subscribers leave. Real HTTP on loopback, the
// changes through Observe as the election makes them.
func TestFiveHundredSubscribersTenHandovers(t *testing.T) {
	const subscribers, handovers = 500, 10
	fc := clocktesting.NewFakeClock(t0) // no heartbeat, no term ends: only the handovers are messages
	fe := &fakeElection{}
	state := func(i int, leader string) election.State {
		return election.State{Identity: "me", Leader: leader, Transitions: i,
			AcquireTime: t0.Add(time.Duration(i) * time.Second), HeldUntil: t0.Add(time.Hour)}
	}
	fe.s = state(0, "r0")
	h, err := New(Config{State: fe.State, Clock: fc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxLocalClients: subscribers})
	if err != nil {
		t.Fatal(err)
	}
	fe.hub = h
	// What every subscriber must read: the leader on connect, then per
	// handover the release and the next leader.
	var changes []election.State
	for i := 1; i <= handovers; i++ {
		changes = append(changes, state(i-1, ""), state(i, "r"+strconv.Itoa(i)))
	}
	want := []string{"data: " + string(NAISJSON(leaderOf(fe.s, t0))) + "\n\n"}
	for _, s := range changes {
		want = append(want, "data: "+string(NAISJSON(leaderOf(s, t0)))+"\n\n")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	url := "http://" + ln.Addr().String() + "/sse"
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	// round connects the subscribers, runs the handovers, measures, and
	// disconnects them again.
	round := func(changes []election.State) (with measurement) {
		t.Helper()
		var (
			wg       sync.WaitGroup
			received atomic.Int64 // messages read, by all subscribers
			failures = make(chan string, subscribers)
		)
		cctx, disconnect := context.WithCancel(context.Background())
		defer func() {
			disconnect()
			wg.Wait()
		}()
		for n := range subscribers {
			wg.Go(func() {
				if err := subscribe(cctx, client, url, want[:1+len(changes)], &received); err != nil {
					failures <- fmt.Sprintf("subscriber %d: %v", n, err)
				}
			})
		}
		// Each handover starts once everyone heard the last one, as a
		// real handover takes longer than a message's way through loopback.
		barrier := func(k int) {
			eventually(t, fmt.Sprintf("every subscriber read %d messages", k), func() bool {
				select {
				case f := <-failures:
					t.Fatal(f)
				default:
				}
				return received.Load() == int64(k*subscribers)
			})
		}
		barrier(1)
		if n := h.Subscribers(); n != subscribers {
			t.Fatalf("subscribers: %d, want %d", n, subscribers)
		}
		for i := 0; i < len(changes); i += 2 {
			fe.set(changes[i])
			fe.set(changes[i+1])
			barrier(i + 3)
		}
		with = measure()
		disconnect()
		wg.Wait()
		close(failures)
		for f := range failures {
			t.Error(f)
		}
		eventually(t, "every subscriber removed", func() bool { return h.Subscribers() == 0 })
		tr.CloseIdleConnections()
		return with
	}

	// A first round without handovers warms up what the runtime and the
	// HTTP client keep for reuse (goroutine descriptors are never freed),
	// so that the baseline is what a second crowd must come back to.
	round(nil)
	before := measure()
	with := round(changes)
	settleGoroutines(t, before.goroutines)
	after := measure()

	t.Logf("%d subscribers, %d handovers, %d messages each, all in order", subscribers, handovers, len(want))
	t.Logf("%-34s %10s %14s %10s", "", "goroutines", "heap in use", "VmRSS")
	for _, m := range []struct {
		name string
		m    measurement
	}{{"before", before}, {"with the subscribers (both ends)", with}, {"after they left", after}} {
		t.Logf("%-34s %10d %10.1f MiB %6.1f MiB", m.name, m.m.goroutines, mib(m.m.heap), mib(m.m.rss))
	}
	// Nothing stays per subscriber: what is left over is far below what
	// they took while connected.
	if grown, took := int64(after.heap)-int64(before.heap), int64(with.heap)-int64(before.heap); grown > took/10+1<<20 {
		t.Errorf("heap in use grew by %.1f MiB after the subscribers left; they took %.1f MiB", mib(uint64(grown)), mib(uint64(took)))
	}
	switch {
	case raceEnabled:
		t.Log("VmRSS not checked: the race detector's shadow memory is never returned")
	case before.rss == 0:
		t.Log("VmRSS not checked: no /proc/self/status")
	default:
		if grown, took := int64(after.rss)-int64(before.rss), int64(with.rss)-int64(before.rss); grown > took/10+2<<20 {
			t.Errorf("VmRSS grew by %.1f MiB after the subscribers left; they took %.1f MiB", mib(uint64(grown)), mib(uint64(took)))
		}
	}
}

// subscribe reads url's stream until ctx ends, checking that it carries
// want in order and nothing else.
func subscribe(ctx context.Context, client *http.Client, url string, want []string, received *atomic.Int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := 0; ; i++ {
		f, err := readFrame(r)
		if ctx.Err() != nil {
			return nil // left, as the test asked
		}
		switch {
		case err != nil:
			return fmt.Errorf("after %d messages: %w", i, err)
		case i >= len(want):
			return fmt.Errorf("message %d %q: more than the %d changes", i, f, len(want))
		case f != want[i]:
			return fmt.Errorf("message %d: %q, want %q", i, f, want[i])
		}
		received.Add(1)
	}
}

type measurement struct {
	goroutines int
	heap, rss  uint64 // bytes
}

// measure collects garbage and returns the process's numbers.
func measure() measurement {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return measurement{goroutines: runtime.NumGoroutine(), heap: ms.HeapInuse, rss: selfRSS()}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// selfRSS is this process's resident set size, or 0 where /proc has none.
func selfRSS() uint64 {
	rss, err := procstat.RSS(procstat.Self)
	if err != nil {
		return 0
	}
	return uint64(rss)
}
