package testenv

import (
	"io"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseMetrics parses a /metrics page in the Prometheus text format.
func ParseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// MetricValue returns the value of the first sample of family name whose
// labels include labels ("k=v" pairs): a counter's or a gauge's value, or
// a histogram's count. ok is false when there is no such sample.
func MetricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// hasLabels reports whether m has every "k=v" label of labels.
func hasLabels(m *dto.Metric, labels []string) bool {
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		found := false
		for _, lp := range m.GetLabel() {
			found = found || (lp.GetName() == k && lp.GetValue() == v)
		}
		if !found {
			return false
		}
	}
	return true
}

// MetricValueT is MetricValue for a test: it fails t when there is no
// such sample.
func MetricValueT(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := MetricValue(fams, name, labels...)
	if !ok {
		t.Fatalf("sample of %s with labels %v: got none, want one", name, labels)
	}
	return v
}
