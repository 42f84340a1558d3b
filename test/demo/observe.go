package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// scrape is one parse of a sidecar's /metrics.
type scrape = testcluster.Metrics

func scrapeMetrics(s *testcluster.Sidecar) (scrape, error) { return s.ScrapeMetrics() }

func leading(sc scrape) bool { return sc.Value("leader_election_master_status") == 1 }

// metrics scrapes every running sidecar, waiting (bounded) until the one
// named leader says it leads and, after a handover, has observed it; then
// it prints one line per replica with the samples as /metrics has them.
func (d *demo) metrics(ctx context.Context, leader string, handover bool) error {
	scrapes := map[string]scrape{}
	ready := func(ctx context.Context) (bool, error) {
		clear(scrapes)
		for _, s := range d.sidecars {
			if s.Exited() {
				continue
			}
			sc, err := scrapeMetrics(s)
			if err != nil {
				return false, nil // it may be between two states; try again
			}
			scrapes[s.Opts.Pod] = sc
		}
		l := scrapes[leader]
		if n, _ := l.Histogram("leader_elector_handover_seconds"); l == nil || !leading(l) || (handover && n == 0) {
			return false, nil
		}
		return true, nil
	}
	waitErr := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, ready)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	for _, s := range d.sidecars {
		sc, ok := scrapes[s.Opts.Pod]
		if !ok {
			fmt.Fprintf(tw, "  %s\t(exited, nothing to scrape)\n", s.Opts.Pod)
			continue
		}
		n, sum := sc.Histogram("leader_elector_handover_seconds")
		fmt.Fprintf(tw, "  %s\tleader_election_master_status{name=%q} %s\tleader_elector_transitions_total %s\tleader_elector_handover_seconds_count %d\t_sum %s\n",
			s.Opts.Pod, lease, num(sc.Value("leader_election_master_status")), num(sc.Value("leader_elector_transitions_total")),
			n, strconv.FormatFloat(sum, 'g', 3, 64))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if waitErr != nil {
		what := "leading"
		if handover {
			what = "leading after a handover"
		}
		d.say("  (after 10s the /metrics of %s still did not show it %s)", leader, what)
	}
	return nil
}

func num(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// events lists the Events regarding the Lease, as `kubectl get
// events.events.k8s.io --field-selector regarding.name=<lease>` does,
// waiting (bounded) for the notes of the handover from old to next: the
// broadcaster writes them asynchronously.
func (d *demo) events(ctx context.Context, old, next string) error {
	want := []string{old + " became leader", old + " stopped leading", next + " became leader"}
	var items []eventsv1.Event
	var missing []string
	waitErr := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := d.cp.Admin.EventsV1().Events(d.ns).List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=" + lease})
		if err != nil {
			return false, fmt.Errorf("list the events regarding the Lease %s: %w", lease, err)
		}
		items = l.Items
		missing = slices.DeleteFunc(slices.Clone(want), func(note string) bool {
			return slices.ContainsFunc(items, func(e eventsv1.Event) bool { return e.Reason == "LeaderElection" && e.Note == note })
		})
		return len(missing) == 0, nil
	})
	if waitErr != nil && !wait.Interrupted(waitErr) {
		return waitErr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	slices.SortStableFunc(items, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	d.say("\n$ kubectl get events.events.k8s.io -n %s --field-selector regarding.name=%s", d.ns, lease)
	tw := tabwriter.NewWriter(d.out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	now := time.Now()
	for _, e := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\n", now.Sub(eventTime(e)).Round(time.Second), e.Type, e.Reason,
			strings.ToLower(e.Regarding.Kind), e.Regarding.Name, e.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(missing) != 0 {
		d.say("(after 10s still missing: %q)", missing)
	}
	return nil
}

// eventTime is when the event was last seen.
func eventTime(e eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.DeprecatedLastTimestamp.Time
}
