package chaos

import (
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// episode is a stretch of time during which one workload had two (or more)
// of something there must be one of: status files, routed pods, labels.
type episode struct {
	workload string
	pods     []string // every pod involved at some time in the episode
	start    time.Time
	end      time.Time // zero while open
	// frozen: a SIGSTOPped sidecar's file took part (the honest exception).
	frozen bool
}

func (e *episode) duration() time.Duration { return e.end.Sub(e.start) }

// fileTracker turns appearances and removals of status files, in the order
// they happened, into episodes of two files at once. Files of frozen
// sidecars (SIGSTOPped, or thawed but not yet removed) are tracked apart:
// "real" episodes count only files of sidecars that can run, "frozen" ones
// involve a frozen sidecar's file. Order matters, not duration: a second file
// that appears before the first one's removal is an episode even when both
// events carry the same timestamp.
type fileTracker struct {
	mu      sync.Mutex
	present map[string]map[string]time.Time // workload -> pod -> since when its file exists
	frozen  map[string]bool                 // pod -> frozen window
	thawed  map[string]time.Time            // pod -> SIGCONT, while its file remains
	real    map[string]*episode
	frz     map[string]*episode
	// onOpen and onClose are called, under the tracker's lock, for real and
	// frozen episodes; onRemoved when a thawed sidecar's file goes, with the
	// time since SIGCONT.
	onOpen, onClose func(e *episode)
	onRemoved       func(pod string, afterThaw time.Duration)
}

func newFileTracker() *fileTracker {
	return &fileTracker{
		present: map[string]map[string]time.Time{}, frozen: map[string]bool{}, thawed: map[string]time.Time{},
		real: map[string]*episode{}, frz: map[string]*episode{},
	}
}

func (f *fileTracker) set(workload, pod string, exists bool, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.present[workload]
	if m == nil {
		m = map[string]time.Time{}
		f.present[workload] = m
	}
	_, had := m[pod]
	if exists {
		// A file renamed over the old one is a new one, of a new writer
		// perhaps, but no new appearance.
		m[pod] = at
	}
	if had == exists {
		return
	}
	if !exists {
		delete(m, pod)
		if f.frozen[pod] {
			delete(f.frozen, pod) // its frozen window ends with the file
			if t, ok := f.thawed[pod]; ok && f.onRemoved != nil {
				f.onRemoved(pod, at.Sub(t))
			}
			delete(f.thawed, pod)
		}
	}
	f.update(workload, at)
}

// freeze marks pod as frozen (SIGSTOP) from at, until its file is removed.
func (f *fileTracker) freeze(workload, pod string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.present[workload][pod]; ok {
		f.frozen[pod] = true
		f.update(workload, at)
	}
}

// thaw notes SIGCONT; the pod stays frozen until its file is removed.
func (f *fileTracker) thaw(pod string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen[pod] {
		f.thawed[pod] = at
	}
}

// awaitingRemoval reports whether pod was thawed and its file is still there.
func (f *fileTracker) awaitingRemoval(pod string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.thawed[pod]
	return ok
}

// exists reports what the tracker believes of pod's file.
func (f *fileTracker) exists(workload, pod string) bool {
	_, ok := f.since(workload, pod)
	return ok
}

// since is when pod's file was last written, if it exists.
func (f *fileTracker) since(workload, pod string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.present[workload][pod]
	return t, ok
}

func (f *fileTracker) update(workload string, at time.Time) {
	var all, running []string
	anyFrozen := false
	for pod := range f.present[workload] {
		all = append(all, pod)
		if f.frozen[pod] {
			anyFrozen = true
		} else {
			running = append(running, pod)
		}
	}
	sort.Strings(all)
	sort.Strings(running)
	f.track(f.real, workload, len(running) >= 2, running, false, at)
	f.track(f.frz, workload, len(all) >= 2 && anyFrozen, all, true, at)
}

func (f *fileTracker) track(open map[string]*episode, workload string, on bool, pods []string, frozen bool, at time.Time) {
	e := open[workload]
	switch {
	case on && e == nil:
		e = &episode{workload: workload, pods: slices.Clone(pods), start: at, frozen: frozen}
		open[workload] = e
		if f.onOpen != nil {
			f.onOpen(e)
		}
	case on:
		for _, p := range pods {
			if !slices.Contains(e.pods, p) {
				e.pods = append(e.pods, p)
			}
		}
	case e != nil:
		e.end = at
		delete(open, workload)
		if f.onClose != nil {
			f.onClose(e)
		}
	}
}

// setTracker turns a changing set of names per workload (the pods a Service
// routes to, the pods labelled leader) into episodes of two or more at once,
// and counts the states with two or more as samples.
type setTracker struct {
	mu      sync.Mutex
	current map[string][]string
	open    map[string]*episode
	onOpen  func(e *episode, state []string)
	onClose func(e *episode)
	// onSample is called for each state with two or more names.
	onSample func(workload string, state []string)
}

func newSetTracker() *setTracker {
	return &setTracker{current: map[string][]string{}, open: map[string]*episode{}}
}

func (s *setTracker) set(workload string, names []string, at time.Time) {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(s.current[workload], names) {
		return
	}
	s.current[workload] = names
	e := s.open[workload]
	if len(names) >= 2 {
		if s.onSample != nil {
			s.onSample(workload, names)
		}
		if e == nil {
			e = &episode{workload: workload, pods: slices.Clone(names), start: at}
			s.open[workload] = e
			if s.onOpen != nil {
				s.onOpen(e, names)
			}
			return
		}
		for _, p := range names {
			if !slices.Contains(e.pods, p) {
				e.pods = append(e.pods, p)
			}
		}
		return
	}
	if e != nil {
		e.end = at
		delete(s.open, workload)
		if s.onClose != nil {
			s.onClose(e)
		}
	}
}

func (s *setTracker) get(workload string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.current[workload])
}

func TestFileTrackerCountsOrderNotDuration(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		do  string // "+" appears, "-" removed, "stop", "cont"
		pod string
		ms  int
	}
	for _, tc := range []struct {
		name       string
		steps      []step
		real       []time.Duration
		frozen     []time.Duration
		afterThaws []time.Duration
	}{
		{"handover, remove first", []step{{"+", "a", 0}, {"-", "a", 10}, {"+", "b", 10}}, nil, nil, nil},
		{"same instant, wrong order", []step{{"+", "a", 0}, {"+", "b", 10}, {"-", "a", 10}}, []time.Duration{0}, nil, nil},
		{"overlap of 5ms", []step{{"+", "a", 0}, {"+", "b", 10}, {"-", "a", 15}}, []time.Duration{5 * time.Millisecond}, nil, nil},
		{"three at once is one episode", []step{{"+", "a", 0}, {"+", "b", 1}, {"+", "c", 2}, {"-", "a", 3}, {"-", "b", 4}}, []time.Duration{3 * time.Millisecond}, nil, nil},
		{"repeated appearance is no change", []step{{"+", "a", 0}, {"+", "a", 5}, {"-", "a", 6}, {"-", "a", 7}, {"+", "b", 8}}, nil, nil, nil},
		{"frozen leader is the exception", []step{{"+", "a", 0}, {"stop", "a", 10}, {"+", "b", 2010}, {"cont", "a", 3000}, {"-", "a", 3004}},
			nil, []time.Duration{994 * time.Millisecond}, []time.Duration{4 * time.Millisecond}},
		{"frozen leader and two running", []step{{"+", "a", 0}, {"stop", "a", 1}, {"+", "b", 2}, {"+", "c", 3}, {"-", "c", 4}, {"cont", "a", 5}, {"-", "a", 6}},
			[]time.Duration{time.Millisecond}, []time.Duration{4 * time.Millisecond}, []time.Duration{time.Millisecond}},
		{"a stopped follower without a file is no exception", []step{{"stop", "a", 0}, {"+", "b", 1}, {"cont", "a", 2}, {"+", "a", 3}, {"-", "b", 4}},
			[]time.Duration{time.Millisecond}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFileTracker()
			var real, frozen, thaws []time.Duration
			f.onClose = func(e *episode) {
				if e.frozen {
					frozen = append(frozen, e.duration())
				} else {
					real = append(real, e.duration())
				}
			}
			f.onRemoved = func(_ string, d time.Duration) { thaws = append(thaws, d) }
			for _, s := range tc.steps {
				switch s.do {
				case "+":
					f.set("w", s.pod, true, at(s.ms))
				case "-":
					f.set("w", s.pod, false, at(s.ms))
				case "stop":
					f.freeze("w", s.pod, at(s.ms))
				case "cont":
					f.thaw(s.pod, at(s.ms))
				}
			}
			if !slices.Equal(real, tc.real) || !slices.Equal(frozen, tc.frozen) || !slices.Equal(thaws, tc.afterThaws) {
				t.Errorf("real episodes %v, frozen %v, removal after SIGCONT %v; want %v, %v, %v", real, frozen, thaws, tc.real, tc.frozen, tc.afterThaws)
			}
		})
	}
}

func TestFileTrackerKeepsWorkloadsApart(t *testing.T) {
	f := newFileTracker()
	opened := 0
	f.onOpen = func(*episode) { opened++ }
	now := time.Now()
	f.set("alpha", "alpha-0", true, now)
	f.set("beta", "beta-0", true, now)
	if opened != 0 {
		t.Errorf("one file in each of two workloads opened %d episodes", opened)
	}
}

func TestSetTrackerSamplesStatesWithTwo(t *testing.T) {
	s := newSetTracker()
	var samples [][]string
	var closed []time.Duration
	s.onSample = func(_ string, state []string) { samples = append(samples, state) }
	s.onClose = func(e *episode) { closed = append(closed, e.duration()) }
	t0 := time.Unix(0, 0)
	s.set("w", []string{"a"}, t0)
	s.set("w", []string{"a", "a"}, t0.Add(1)) // one pod in two slices is one pod
	s.set("w", []string{"b", "a"}, t0.Add(2))
	s.set("w", []string{"a", "b"}, t0.Add(3)) // no change
	s.set("w", []string{"a", "b", "c"}, t0.Add(4))
	s.set("w", []string{"c"}, t0.Add(7))
	if len(samples) != 2 || !slices.Equal(closed, []time.Duration{5}) {
		t.Errorf("samples %v, closed episodes %v; want 2 samples and one episode of 5ns", samples, closed)
	}
	if got := s.get("w"); !slices.Equal(got, []string{"c"}) {
		t.Errorf("current = %v", got)
	}
}

func TestRequestLogCountsWatchesWithinOneRetryPeriod(t *testing.T) {
	var l requestLog
	t0 := time.Unix(0, 0)
	watch := func(ms int) int {
		return l.add(testcluster.Request{Time: t0.Add(time.Duration(ms) * time.Millisecond), Method: "GET", Watch: true})
	}
	if n := l.add(testcluster.Request{Time: t0, Method: "PUT"}); n != 0 {
		t.Errorf("a PUT counted as %d watches", n)
	}
	// Back-off from RETRY_PERIOD/4, with some jitter: 0, 75, 225, 500 ms.
	for _, ms := range []int{0, 75, 225} {
		watch(ms)
	}
	if n := watch(500); n != 2 {
		t.Errorf("watches within %s of the 4th with back-off = %d, want 2 (225ms and itself)", retryPeriod, n)
	}
	// Finding 4's loop: nine within 80 ms.
	var n int
	for i := range 9 {
		n = watch(1000 + 10*i)
	}
	if n != 9 {
		t.Errorf("nine watches within 80ms counted as %d", n)
	}
}
