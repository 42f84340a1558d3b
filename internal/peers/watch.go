package peers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Rewatch is the wait before a broken watch is started again, with a new
// list: a second (20% jitter), short, because what changes meanwhile is
// seen only then, yet no tighter loop than a list and a watch a second
// while the API server refuses. (500 ms, doubling to a second, started
// watches of the leader's three watchers too close together for the chaos
// suite's hot-loop bound after a revoked permission; the reflector's own
// back-off, 0.8 s doubling to 30 s, left a leader's label unrepaired for
// seconds after the permission came back.)
var Rewatch = wait.Backoff{Duration: time.Second, Factor: 1, Jitter: 0.2, Steps: 1 << 30, Cap: time.Second}

// WatchConfig configures Watch.
type WatchConfig struct {
	Pods     Pods
	Selector labels.Selector // the peers; nil: the pod alone
	Pod      string          // this pod
	Clock    clock.WithTicker
	// WatchErr, if set, gets every error of a list or watch, and nil once a
	// watch started.
	WatchErr func(error)
	// Synced, if set, is called once an informer has its first list.
	Synced func()
	// Rewatch is the back-off between broken watches; zero: Rewatch.
	Rewatch wait.Backoff
}

// A Handler acts on the peers in store. over ends the watch; retry > 0
// calls it again after retry, unless the watch breaks first, and changes
// seen meanwhile wait for that call (so a failing pass does not repeat
// faster than its back-off); retry 0 calls it again at the next change.
type Handler func(store cache.Store) (over bool, retry time.Duration)

// Watch runs an informer of the peers until ctx ends or handle says the
// watch is over, calling handle once the first list is in and after every
// change. An informer whose list or watch breaks is stopped, handle is
// called once more with what its store has, and a new informer starts
// after Rewatch's back-off, with a new list, not at the reflector's pace.
func Watch(ctx context.Context, c WatchConfig, handle Handler) {
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	backoff := c.Rewatch
	if backoff.Duration == 0 {
		backoff = Rewatch
	}
	for {
		if over := watchOnce(ctx, c, handle); over || ctx.Err() != nil {
			return
		}
		t := c.Clock.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// watchOnce runs one informer until ctx ends (over), handle says the watch
// is over (over), or the informer's list or watch breaks.
func watchOnce(ctx context.Context, c WatchConfig, handle Handler) (over bool) {
	kick, broken := make(chan struct{}, 1), make(chan struct{}, 1)
	informer, reg, err := Informer(c.Pods, c.Selector, c.Pod, kick, func(err error) {
		if c.WatchErr != nil {
			c.WatchErr(err)
		}
		if err == nil {
			return
		}
		select {
		case broken <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return true // only if the informer had stopped already
	}
	ictx, stop := context.WithCancel(ctx) // ends the informer when the watch does
	defer stop()
	synced := make(chan bool, 1)
	var wait func()
	go func() {
		var ok bool
		wait, ok = Run(ictx, informer, reg)
		synced <- ok
	}()
	defer func() { stop(); <-synced; wait() }()
	broke := false
	select {
	case ok := <-synced:
		synced <- ok // for the deferred wait
		if !ok {
			return ctx.Err() != nil
		}
	case <-broken:
		// The list or the watch failed: start again, not at the
		// reflector's pace; a list that came in is handled first, once
		// the informer has handed it out.
		if informer.LastSyncResourceVersion() == "" {
			return false
		}
		ok := <-synced
		synced <- ok
		if !ok {
			return ctx.Err() != nil
		}
		broke = true
	}
	if c.Synced != nil {
		c.Synced()
	}
	for {
		over, retry := handle(informer.GetStore())
		if over {
			return true
		}
		if broke {
			return false
		}
		var again <-chan time.Time
		changed, stopTimer := (<-chan struct{})(kick), func() bool { return false }
		if retry > 0 {
			t := c.Clock.NewTimer(retry)
			again, changed, stopTimer = t.C(), nil, t.Stop
		}
		select {
		case <-ctx.Done():
			stopTimer()
			return true
		case <-broken:
			broke = true // handle what the store has, then start again
		case <-changed:
		case <-again:
		}
		stopTimer()
	}
}
