package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	header   string
	settings settings
	idle     leaseTraffic
	scale    []*scaleResult
	legacy   map[string]*legacyResult // by elector, N=3 only
	routing  *legacyResult
	pods     *podResult // nil: not measured (BENCH_POD_ROUNDS=0)
	// lifecycle is nil when not measured (BENCH_LIFECYCLE_ROUNDS=0).
	lifecycle *lifecycleResult
	took      time.Duration
}

// write prints the tables to out and writes them with the chart to dir.
func (r *report) write(out io.Writer, dir string) error {
	var md strings.Builder
	r.markdown(&md)
	fmt.Fprint(out, "\n", md.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	chart := filepath.Join(dir, "handover.svg")
	if err := handoverChart(r.scale, chart); err != nil {
		return err
	}
	fmt.Fprintf(&md, "\n![graceful handover per round, both electors, per N](handover.svg)\n")
	if r.lifecycle != nil && len(r.lifecycle.electors) > 0 {
		if err := lifecycleChart(r.lifecycle, filepath.Join(dir, "lifecycle.svg")); err != nil {
			return err
		}
		fmt.Fprintf(&md, "\n![real pods: the call to the next leader's status file per round, each elector, per operation](lifecycle.svg)\n")
	}
	results := filepath.Join(dir, "results.md")
	if err := os.WriteFile(results, []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", results, err)
	}
	fmt.Fprintf(out, "\nwrote %s and %s\n", results, chart)
	return nil
}

func (r *report) markdown(w io.Writer) {
	s := r.settings
	fmt.Fprintf(w, "%s\n\n", r.header)
	electors := ""
	if s.electors != "both" {
		electors = " BENCH_ELECTORS=" + s.electors
	}
	fmt.Fprintf(w, "Command: `BENCH_REPLICAS=%s BENCH_ROUNDS=%d BENCH_CRASH_ROUNDS=%d BENCH_POD_ROUNDS=%d BENCH_LIFECYCLE_ROUNDS=%d BENCH_WINDOW=%s%s make bench` (took %s). "+
		"Both electors with their defaults: LEASE_DURATION 15s, RENEW_DEADLINE 10s, RETRY_PERIOD 2s.\n\n",
		joinInts(s.replicas), s.rounds, s.crashRounds, s.podRounds, s.lifecycleRounds, s.window, electors, r.took.Round(time.Second))
	fmt.Fprintf(w, "| measure |")
	for _, x := range r.scale {
		fmt.Fprintf(w, " N=%d %s |", x.n, x.elector)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(r.scale)))
	row := func(name string, cell func(x *scaleResult) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, x := range r.scale {
			fmt.Fprintf(w, " %s |", cell(x))
		}
		fmt.Fprintln(w)
	}
	row(fmt.Sprintf("graceful handover p50 / p99 (SIGTERM of the leader to the next status file, n=%d)", s.rounds), func(x *scaleResult) string { return p50p99(x.handover) })
	row(fmt.Sprintf("crash failover p50 / max (SIGKILL; next status file minus the Lease's expiry as observed, n=%d)", s.crashRounds), func(x *scaleResult) string { return p50max(x.crash) })
	row(fmt.Sprintf("sidecar restart p50 / max (SIGKILL, same pod started again, to any status file, n=%d)", s.crashRounds), func(x *scaleResult) string { return p50max(x.restart) })
	row(fmt.Sprintf("handover on request p50 / p99 (`resign` started to the next status file, n=%d)", s.rounds), func(x *scaleResult) string {
		if x.resignNA != "" {
			return strings.ReplaceAll(x.resignNA, "|", `\|`)
		}
		return p50p99(x.resign)
	})
	verbs := map[string]bool{}
	for _, x := range r.scale {
		for v, n := range x.traffic.requests {
			verbs[v] = verbs[v] || n != 0 // a verb never used in any window gets no row
		}
	}
	for _, v := range slices.Sorted(maps.Keys(verbs)) {
		if !verbs[v] {
			continue
		}
		row("Lease requests/min, "+v, func(x *scaleResult) string { return fmt.Sprintf("%.1f", x.traffic.requests[v]) })
	}
	row("Lease watch events/min", func(x *scaleResult) string { return fmt.Sprintf("%.1f", x.traffic.watchEvents) })
	row("resident memory: leader / median follower / largest follower", func(x *scaleResult) string {
		return fmt.Sprintf("%s / %s / %s", mib(x.rssLeader), mib(median(x.rssFollowers)), mib(slices.Max(append([]int64{0}, x.rssFollowers...))))
	})
	row("CPU millicores: leader / mean follower / busiest follower", func(x *scaleResult) string {
		return fmt.Sprintf("%.2f / %.2f / %.2f", x.cpuLeader, mean(x.cpuFollowers), slices.Max(append([]float64{0}, x.cpuFollowers...)))
	})
	row("steady window (traffic, CPU)", func(x *scaleResult) string {
		if x.lost > 0 {
			return fmt.Sprintf("%s (%d replicas ended in it)", x.window, x.lost)
		}
		return x.window.String()
	})
	row("start of the replicas to the first leader", func(x *scaleResult) string { return fmtDur(x.startup) })
	if slices.ContainsFunc(r.scale, func(x *scaleResult) bool { return x.err != nil }) {
		row("ended early, with what it measured until then", func(x *scaleResult) string {
			if x.err == nil {
				return "-"
			}
			return strings.ReplaceAll(strings.ReplaceAll(x.err.Error(), "|", `\|`), "\n", " ")
		})
	}
	fmt.Fprintf(w, "\nLease traffic is kube-apiserver's own count (`apiserver_request_total` by verb, `apiserver_watch_events_total`, resource leases), "+
		"diffed over the window, all namespaces: it includes the control plane alone (%s, %.1f watch events/min, measured before the replicas) "+
		"and one event per Lease update for the bench's own watch. A WATCH request is counted when it ends. "+
		"A status file is timed by its modification time plus the resolution of file timestamps (the kernel's coarse clock, one tick), not by when the bench's inotify event arrived. "+
		"Memory is VmRSS, CPU utime+stime over the window, from /proc. "+
		"Replicas talk to kube-apiserver directly; pods are created %d at a time and sidecars started %s apart.\n",
		trafficSummary(r.idle), r.idle.watchEvents, createParallel, startSpacing)
	if r.lifecycle != nil {
		defer r.lifecycle.markdown(w)
	}
	if r.pods != nil {
		defer r.pods.markdown(w, s.podRounds)
	}
	if r.legacy == nil {
		return
	}
	ours, theirs := r.legacy["leader-elector"], r.legacy["client-go elector"]
	fmt.Fprintf(w, "\nN=%d only, each replica behind a counting proxy:\n\n| measure | leader-elector | client-go elector |\n|---|---|---|\n", legacyReplicas)
	fmt.Fprintf(w, "| push to followers p50 / p99 (SIGTERM until an app beside a follower hears of the next leader, n=%d) | %s | %s |\n", len(ours.push), p50p99(ours.push), p50p99(theirs.push))
	fmt.Fprintf(w, "| gatekeeper handover p50 / p99 (SIGTERM until the next leader's command runs, n=%d) | %s | %s |\n", len(ours.command), p50p99(ours.command), p50p99(theirs.command))
	fmt.Fprintf(w, "| routing handover p50 / p99 (SIGTERM until the Service names the next leader alone, n=%d) | %s | - |\n", len(r.routing.routing), p50p99(r.routing.routing))
	fmt.Fprintf(w, "| routing gap p50 / p99 (no ready endpoint during a handover) | %s | - |\n", p50p99(r.routing.gap))
	fmt.Fprintln(w, "\npush: leader-elector's GET /watch (SSE) on each follower; the baseline's OnNewLeader, written to a file on each follower, polled every 1ms.")
}

func trafficSummary(t leaseTraffic) string {
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(t.requests)) {
		if t.requests[v] != 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f/min", v, t.requests[v]))
		}
	}
	if len(parts) == 0 {
		return "no requests"
	}
	return strings.Join(parts, ", ")
}

func p50p99(ds []time.Duration) string { return pct(ds, 50) + " / " + pct(ds, 99) }
func p50max(ds []time.Duration) string { return pct(ds, 50) + " / " + pct(ds, 100) }

// pct is the nearest-rank percentile.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return fmtDur(s[max(i, 0)])
}

func fmtDur(d time.Duration) string {
	if d > -time.Second && d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}
