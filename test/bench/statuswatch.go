package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// statusFileName is where testcluster.StartSidecar puts a replica's status
// file, under its directory.
var statusFileName = filepath.Join("emptydir", "leader_status")

// statusWatch notes, through inotify, when each replica's status file
// appears, by its modification time (plus its resolution): polling 200 files every millisecond
// would take a core of the two the replicas are measured on.
type statusWatch struct {
	w    *fsnotify.Watcher
	log  *slog.Logger
	reps []*testcluster.Sidecar // set by run
	dirs map[string]int         // status file directory -> replica

	tick     time.Duration // resolution of file timestamps
	mu       sync.Mutex
	appeared map[int]time.Time // latest create or write of a replica's file
	changed  chan struct{}     // closed and replaced on each
}

func newStatusWatch(log *slog.Logger) (*statusWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch status files: %w", err)
	}
	// File timestamps come from the kernel's coarse clock (one scheduler
	// tick, 4 ms at HZ=250).
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_REALTIME_COARSE, &res); err != nil {
		return nil, fmt.Errorf("resolution of file timestamps: %w", err)
	}
	return &statusWatch{w: w, log: log, tick: time.Duration(res.Nano()), dirs: map[string]int{}, appeared: map[int]time.Time{}, changed: make(chan struct{})}, nil
}

// add watches the status file directory of replica i, whose directory is
// dir, making it; call it before the replica starts and before run.
func (sw *statusWatch) add(i int, dir string) error {
	d := filepath.Dir(filepath.Join(dir, statusFileName))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	if err := sw.w.Add(d); err != nil {
		return fmt.Errorf("watch %s: %w", d, err)
	}
	sw.dirs[d] = i
	return nil
}

// run notes events, with reps the replicas of add's indices, until close.
func (sw *statusWatch) run(reps []*testcluster.Sidecar) {
	sw.mu.Lock()
	sw.reps = reps
	sw.mu.Unlock()
	for {
		select {
		case ev, ok := <-sw.w.Events:
			if !ok {
				return
			}
			now := time.Now()
			i, ok := sw.dirs[filepath.Dir(ev.Name)]
			if !ok || ev.Name != reps[i].StatusFile || !ev.Op.Has(fsnotify.Create) && !ev.Op.Has(fsnotify.Write) {
				continue
			}
			// The file appeared at its modification time, which the kernel
			// stamps from its coarse clock, so up to one tick of it later:
			// that bound is taken. The event reaches this process later
			// still, by as long as it waits for a core among the replicas
			// woken by the same change.
			if fi, err := os.Stat(ev.Name); err == nil && fi.ModTime().Add(sw.tick).Before(now) {
				now = fi.ModTime().Add(sw.tick)
			}
			sw.mu.Lock()
			sw.appeared[i] = now
			close(sw.changed)
			sw.changed = make(chan struct{})
			sw.mu.Unlock()
		case err, ok := <-sw.w.Errors:
			if !ok {
				return
			}
			sw.log.Warn("status file watch", "err", err)
		}
	}
}

func (sw *statusWatch) close() { _ = sw.w.Close() }

// next waits until the status file of a running replica other than not
// has appeared after since, and returns the replica and when. A file whose
// event was lost is found by its modification time, checked every 100ms.
func (sw *statusWatch) next(ctx context.Context, not *testcluster.Sidecar, since time.Time, timeout time.Duration) (*testcluster.Sidecar, time.Time, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		sw.mu.Lock()
		changed, reps := sw.changed, sw.reps
		var found *testcluster.Sidecar
		var at time.Time
		for i, t := range sw.appeared {
			if s := reps[i]; s != not && t.After(since) && !s.Exited() && s.HasStatusFile() && (found == nil || t.Before(at)) {
				found, at = s, t
			}
		}
		sw.mu.Unlock()
		if found != nil {
			return found, at, nil
		}
		select {
		case <-changed:
		case <-tick.C:
			for _, s := range reps {
				// Older than 50ms: not an event still on its way.
				if fi, err := os.Stat(s.StatusFile); err == nil && s != not && !s.Exited() && fi.ModTime().After(since) && time.Since(fi.ModTime()) > 50*time.Millisecond {
					sw.log.Warn("status file event missed; timed by its modification time", "pod", s.Opts.Pod)
					return s, fi.ModTime(), nil
				}
			}
		case <-deadline:
			return nil, time.Time{}, fmt.Errorf("no new leader's status file within %s", timeout)
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
	}
}

// leader returns the running replica with a status file, waiting up to
// timeout for one.
func (sw *statusWatch) leader(ctx context.Context, timeout time.Duration) (*testcluster.Sidecar, error) {
	s, _, err := sw.next(ctx, nil, time.Time{}, timeout)
	if err != nil {
		return nil, errors.Join(errors.New("find the leader"), err)
	}
	return s, nil
}
