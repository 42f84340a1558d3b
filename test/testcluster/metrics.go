package testcluster

import (
	"fmt"
	"math"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one parse of a sidecar's /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// ScrapeMetrics reads and parses the sidecar's /metrics.
func (s *Sidecar) ScrapeMetrics() (Metrics, error) {
	code, body, err := s.Get("/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", s.Opts.Pod, err)
	}
	if code != 200 {
		return nil, fmt.Errorf("scrape %s: GET /metrics = %d: %s", s.Opts.Pod, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics of %s: %w", s.Opts.Pod, err)
	}
	return m, nil
}

// Value is the gauge or counter name with the given label values (name,
// value pairs), or NaN when there is no such sample.
func (m Metrics) Value(name string, labels ...string) float64 {
	mf := m[name]
	if mf == nil {
		return math.NaN()
	}
next:
	for _, s := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(s.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case s.GetGauge() != nil:
			return s.GetGauge().GetValue()
		case s.GetCounter() != nil:
			return s.GetCounter().GetValue()
		}
	}
	return math.NaN()
}

// Histogram is the sample count and sum of the histogram name; 0 and NaN
// when there is none.
func (m Metrics) Histogram(name string) (uint64, float64) {
	mf := m[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, math.NaN()
	}
	h := mf.GetMetric()[0].GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}
