package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Samples are scraped metric values keyed by Key(name, labels): counters,
// gauges, and for histograms name_count and name_sum.
type Samples map[string]float64

// Key renders a sample key: name{a="x",b="y"} with labels sorted.
func Key(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	ks := make([]string, 0, len(labels))
	for k := range labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Get returns a sample's value and whether it was present.
func (s Samples) Get(name string, labels map[string]string) (float64, bool) {
	v, ok := s[Key(name, labels)]
	return v, ok
}

// Scrape fetches url (a /metrics endpoint) over HTTP and parses the text
// exposition format: operators' and tests' way to read what Prometheus reads.
func Scrape(ctx context.Context, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scrape %s: HTTP %d: %s", url, resp.StatusCode, b)
	}
	return ParseText(resp.Body)
}

// ParseText parses the Prometheus text exposition format into Samples.
func ParseText(r io.Reader) (Samples, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := Samples{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[Key(name, labels)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[Key(name, labels)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[Key(name+"_count", labels)] = float64(m.GetHistogram().GetSampleCount())
				out[Key(name+"_sum", labels)] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_UNTYPED:
				out[Key(name, labels)] = m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}
