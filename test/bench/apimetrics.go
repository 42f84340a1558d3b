package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// leaseTraffic is what kube-apiserver's own /metrics count for Leases, all
// namespaces together: requests by verb (apiserver_request_total) and watch
// events sent (apiserver_watch_events_total). A watch request is counted
// when it ends.
type leaseTraffic struct {
	requests    map[string]float64 // by verb
	watchEvents float64
}

// minus is t-o, each counter.
func (t leaseTraffic) minus(o leaseTraffic) leaseTraffic {
	d := leaseTraffic{requests: maps.Clone(t.requests), watchEvents: t.watchEvents - o.watchEvents}
	for verb, n := range o.requests {
		d.requests[verb] -= n
	}
	return d
}

// perMinute scales counts over window to counts per minute.
func (t leaseTraffic) perMinute(window time.Duration) leaseTraffic {
	r := leaseTraffic{requests: map[string]float64{}, watchEvents: t.watchEvents / window.Minutes()}
	for verb, n := range t.requests {
		r.requests[verb] = n / window.Minutes()
	}
	return r
}

// scrapeLeaseTraffic reads kube-apiserver's /metrics with the admin client.
func (b *bench) scrapeLeaseTraffic(ctx context.Context) (leaseTraffic, error) {
	body, err := b.cp.Admin.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return leaseTraffic{}, fmt.Errorf("scrape kube-apiserver /metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return leaseTraffic{}, fmt.Errorf("parse kube-apiserver /metrics: %w", err)
	}
	return leaseTrafficOf(families)
}

// leaseTrafficOf sums the Lease samples of the two counters.
func leaseTrafficOf(families map[string]*dto.MetricFamily) (leaseTraffic, error) {
	t := leaseTraffic{requests: map[string]float64{}}
	reqs, events := families["apiserver_request_total"], families["apiserver_watch_events_total"]
	if reqs == nil || events == nil {
		return t, fmt.Errorf("kube-apiserver /metrics has no apiserver_request_total or apiserver_watch_events_total")
	}
	for _, m := range reqs.GetMetric() {
		l := labels(m)
		if l["resource"] == "leases" && l["group"] == "coordination.k8s.io" {
			t.requests[l["verb"]] += m.GetCounter().GetValue()
		}
	}
	for _, m := range events.GetMetric() {
		// "resource" since Kubernetes 1.32, "kind" before.
		if l := labels(m); l["resource"] == "leases" || l["kind"] == "Lease" {
			t.watchEvents += m.GetCounter().GetValue()
		}
	}
	return t, nil
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// idleTraffic is the Lease traffic of the control plane alone (its own
// identity Lease in kube-system, renewed every 10s), which every other
// figure includes.
func (b *bench) idleTraffic(ctx context.Context, window time.Duration) (leaseTraffic, error) {
	before, err := b.scrapeLeaseTraffic(ctx)
	if err != nil {
		return leaseTraffic{}, err
	}
	if err := sleep(ctx, window); err != nil {
		return leaseTraffic{}, err
	}
	after, err := b.scrapeLeaseTraffic(ctx)
	if err != nil {
		return leaseTraffic{}, err
	}
	return after.minus(before).perMinute(window), nil
}
