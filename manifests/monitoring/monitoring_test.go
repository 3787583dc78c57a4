// Package monitoring_test proves the shipped monitoring: the alerts
// (alerts.yaml, the one source) pass `promtool check rules` and their
// promtool unit tests, the generated PrometheusRule and the chart's copies
// equal the source, every runbook link lands on a heading of
// docs/operations.md, and every PromQL expression of the alerts and the
// Grafana dashboard parses with Prometheus' own parser and selects only
// metrics the agent really registers (internal/metrics). The tools are the real
// ones, built by hack/build-tools.sh (make test builds them first).
package monitoring_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/internal/testing/tools"
)

var update = flag.Bool("update", false, "rewrite the files generated from alerts.yaml and dashboard.json")

const (
	runbookBase = "https://github.com/kagenti/authbridge-node/blob/main/docs/operations.md#"
	chartFiles  = "../../charts/authbridge-node/files"
	operations  = "../../docs/operations.md"
)

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

func loadAlerts(t *testing.T) (ruleFile, []rule) {
	t.Helper()
	b, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var rules []rule
	for _, g := range rf.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("alerts.yaml has no rules")
	}
	return rf, rules
}

// prometheusRule is the PrometheusRule generated from alerts.yaml.
func prometheusRule(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := yaml.Unmarshal(src, &spec); err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata": map[string]any{
			"name":      "authbridge-node",
			"namespace": "authbridge-system",
			"labels":    map[string]any{"app.kubernetes.io/name": "authbridge-node"},
		},
		"spec": spec,
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("# Generated from alerts.yaml by `go test ./manifests/monitoring -run TestGenerated -update`: edit alerts.yaml.\n"), b...)
}

// TestGenerated: the PrometheusRule and the chart's copies come from
// alerts.yaml and dashboard.json; -update rewrites them.
func TestGenerated(t *testing.T) {
	want := map[string][]byte{"prometheusrule.yaml": prometheusRule(t)}
	for _, f := range []string{"alerts.yaml", "dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want[filepath.Join(chartFiles, f)] = b
	}
	for path, b := range want {
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is not what alerts.yaml/dashboard.json generate (err %v): run go test ./manifests/monitoring -run TestGenerated -update", path, err)
		}
	}
}

func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := tools.For(t, "promtool")
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// TestPromtool runs promtool's own checks and the alerts' unit tests.
func TestPromtool(t *testing.T) {
	for _, args := range [][]string{
		{"check", "rules", "--lint=all", "--lint-fatal", "alerts.yaml"},
		{"check", "config", "--lint=all", "--lint-fatal", "prometheus.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		out, err := promtool(t, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestAlertTestsCanFail proves the unit tests assert each alert firing:
// with one alert's expression replaced by one that never fires, promtool
// test rules must fail. It also requires, per alert, a healthy series in
// the same test (a node that is in no expected alert), so "silent on the
// healthy series" is asserted too.
func TestAlertTestsCanFail(t *testing.T) {
	_, rules := loadAlerts(t)
	src, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `json:"exp_labels"`
				} `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &tf); err != nil {
		t.Fatal(err)
	}
	nodeRE := regexp.MustCompile(`node="([^"]+)"`)
	for _, r := range rules {
		fires, healthy := false, false
		for _, tc := range tf.Tests {
			alerting := map[string]bool{}
			tested := false
			for _, a := range tc.AlertRuleTest {
				if a.Alertname != r.Alert {
					continue
				}
				tested = true
				for _, e := range a.ExpAlerts {
					fires = true
					alerting[e.ExpLabels["node"]] = true
				}
			}
			for _, s := range tc.InputSeries {
				if m := nodeRE.FindStringSubmatch(s.Series); tested && m != nil && !alerting[m[1]] {
					healthy = true
				}
			}
		}
		if !fires || !healthy {
			t.Errorf("%s: alerts_test.yaml must show it firing (%v) and a healthy node's series it stays silent on (%v)", r.Alert, fires, healthy)
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		// The expression as it appears in the file: one line, or a block.
		old := "expr: " + r.Expr
		if strings.Contains(r.Expr, "\n") {
			old = "expr: |\n      " + strings.ReplaceAll(strings.TrimSuffix(r.Expr, "\n"), "\n", "\n      ")
		}
		if !bytes.Contains(src, []byte(old)) {
			t.Fatalf("%s: expression not found verbatim in alerts.yaml", r.Alert)
		}
		mutated := bytes.Replace(src, []byte(old), []byte("expr: vector(1) == 0"), 1)
		if err := os.WriteFile(filepath.Join(dir, "alerts.yaml"), mutated, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := promtool(t, "test", "rules", filepath.Join(dir, "alerts_test.yaml")); err == nil {
			t.Errorf("%s never fires, yet promtool test rules passed:\n%s", r.Alert, out)
		}
	}
}

// TestAlertShape: severity, summary naming the node and the agent pod, a
// description, a runbook link to an existing heading of docs/operations.md.
func TestAlertShape(t *testing.T) {
	_, rules := loadAlerts(t)
	anchors := headingAnchors(t, operations)
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Alert] || !strings.HasPrefix(r.Alert, "AuthBridge") {
			t.Errorf("alert %q: duplicate or not prefixed AuthBridge", r.Alert)
		}
		seen[r.Alert] = true
		if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		s := r.Annotations["summary"]
		if !strings.Contains(s, "{{ $labels.node }}") || !strings.Contains(s, "{{ $labels.pod }}") {
			t.Errorf("%s: summary %q must name the node and the agent pod ({{ $labels.node }}, {{ $labels.pod }})", r.Alert, s)
		}
		if r.Annotations["description"] == "" {
			t.Errorf("%s: no description", r.Alert)
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookBase)
		if !ok || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q is not %s<a heading of docs/operations.md>", r.Alert, u, runbookBase)
		}
	}
}

// headingAnchors returns GitHub's anchors for a Markdown file's headings:
// lower case, punctuation other than - and _ dropped, spaces to hyphens,
// repeats suffixed -1, -2.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	count := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var s strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				s.WriteRune(r)
			case r == ' ':
				s.WriteRune('-')
			}
		}
		a := s.String()
		if n := count[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		count[a]++
	}
	return out
}

func TestHeadingAnchors(t *testing.T) {
	a := headingAnchors(t, operations)
	for _, want := range []string{"operating-authbridge-node", "a-node-is-labelled-egress-redirectnone--capablefalse", "authbridgepodswithoutrules"} {
		if !a[want] {
			t.Errorf("anchor %q not derived from docs/operations.md", want)
		}
	}
}

// TestDocsAlertTable: docs/operations.md lists the shipped alerts (name,
// severity, for) and holds no copy of their rules that could drift.
func TestDocsAlertTable(t *testing.T) {
	_, rules := loadAlerts(t)
	b, err := os.ReadFile(operations)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if strings.Contains(doc, "kind: PrometheusRule") {
		t.Error("docs/operations.md carries a PrometheusRule: point to manifests/monitoring instead")
	}
	rowRE := regexp.MustCompile("(?m)^\\| \\[`(AuthBridge\\w+)`\\]\\(#\\w+\\) \\| (\\w+) \\| ([^|]*) \\|")
	rows := map[string]string{}
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		rows[m[1]] = m[2] + " " + strings.TrimSpace(m[3])
	}
	for _, r := range rules {
		f := r.For
		if f == "" {
			f = "-"
		}
		if want := r.Labels["severity"] + " " + f; rows[r.Alert] != want {
			t.Errorf("docs/operations.md alert table row for %s: %q, want severity and for %q", r.Alert, rows[r.Alert], want)
		}
		delete(rows, r.Alert)
	}
	for a := range rows {
		t.Errorf("docs/operations.md lists %s, which alerts.yaml does not have", a)
	}
}

// registeredNames returns every metric name the agent exports, with the
// _bucket/_sum/_count series of its histograms and summaries, from the
// collectors metrics.NewMetrics registers (the agent's only registration).
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{Registerer: prometheus.NewRegistry()}
	metrics.NewMetrics(rec)
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range rec.collectors {
		descs := make(chan *prometheus.Desc, 16)
		c.Describe(descs)
		close(descs)
		var base []string
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			base = append(base, m[1])
		}
		suffixes := []string{""}
		switch kind(c) {
		case "histogram":
			suffixes = []string{"_bucket", "_sum", "_count"}
		case "summary":
			suffixes = []string{"", "_sum", "_count"}
		}
		for _, n := range base {
			for _, s := range suffixes {
				names[n+s] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no metrics registered")
	}
	return names
}

// kind tells histograms and summaries from the rest: vectors by their type,
// single metrics by what they write.
func kind(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	ms := make(chan prometheus.Metric, 16)
	c.Collect(ms)
	close(ms)
	for m := range ms {
		var d dto.Metric
		if m.Write(&d) == nil {
			switch {
			case d.Histogram != nil:
				return "histogram"
			case d.Summary != nil:
				return "summary"
			}
		}
	}
	return ""
}

type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
	r.Registerer.MustRegister(cs...)
}

func TestRegisteredNames(t *testing.T) {
	names := registeredNames(t)
	for _, n := range []string{"authbridge_agent_ready", "authbridge_cni_add_duration_seconds_bucket", "authbridge_probe_duration_seconds_count", "authbridge_cooperative_pods_total"} {
		if !names[n] {
			t.Errorf("%s not among the registered names %v", n, names)
		}
	}
	if names["authbridge_cni_add_duration_seconds"] {
		t.Error("a histogram's bare name is no series")
	}
}

type parsed struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error"`
}

// parse runs Prometheus' PromQL parser (hack/promql-names) on exprs.
func parse(t *testing.T, exprs []string) []parsed {
	t.Helper()
	bin := tools.For(t, "promql-names")
	in, _ := json.Marshal(exprs)
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promql-names: %v", err)
	}
	var res []parsed
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(exprs) {
		t.Fatalf("promql-names output %s: %v", out, err)
	}
	return res
}

// Grafana's variables that are not PromQL: range variables become a
// duration for the parser; $node stays, it only occurs inside strings.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// scrapeMetrics are series Prometheus itself adds to every target.
var scrapeMetrics = map[string]bool{"up": true}

type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs returns each PromQL expression of the dashboard with the
// panel (or variable) it belongs to.
func dashboardExprs(t *testing.T) (exprs, where []string) {
	t.Helper()
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, grafanaVars.Replace(tg.Expr))
				where = append(where, "panel "+p.Title)
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values(<selector>, <label>)", v.Name, v.Query)
			continue
		}
		exprs = append(exprs, m[1])
		where = append(where, "variable "+v.Name)
	}
	if len(exprs) == 0 {
		t.Fatal("dashboard.json has no queries")
	}
	return exprs, where
}

// TestPromQLAgainstRegistry: every alert and dashboard expression parses
// and selects only metrics the agent registers, so renaming a metric fails
// make test instead of silently emptying a panel or an alert.
func TestPromQLAgainstRegistry(t *testing.T) {
	names := registeredNames(t)
	exprs, where := dashboardExprs(t)
	_, rules := loadAlerts(t)
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
		where = append(where, "alert "+r.Alert)
	}
	used := map[string]bool{}
	for i, p := range parse(t, exprs) {
		if p.Error != "" {
			t.Errorf("%s: %q does not parse: %s", where[i], p.Expr, p.Error)
			continue
		}
		if len(p.Metrics) == 0 {
			t.Errorf("%s: %q selects no metric", where[i], p.Expr)
		}
		for _, m := range p.Metrics {
			used[m] = true
			if !names[m] && !scrapeMetrics[m] {
				t.Errorf("%s: metric %s is not registered by the agent (internal/metrics)", where[i], m)
			}
		}
	}
	var unused []string
	for n := range names {
		if !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	t.Logf("%d expressions checked; registered metrics no panel or alert shows: %v", len(exprs), unused)
}

// TestParserCatchesMistakes proves the check above can fail: a typo in
// PromQL and an unknown metric are both reported.
func TestParserCatchesMistakes(t *testing.T) {
	res := parse(t, []string{`rate(authbridge_pods[5m]`, `authbridge_no_such_metric{node=~"$node"}`, `{__name__="authbridge_agent_ready"}`})
	if res[0].Error == "" {
		t.Errorf("unbalanced parenthesis parsed: %+v", res[0])
	}
	names := registeredNames(t)
	if res[1].Error != "" || len(res[1].Metrics) != 1 || names[res[1].Metrics[0]] {
		t.Errorf("unknown metric not caught: %+v", res[1])
	}
	if len(res[2].Metrics) != 1 || res[2].Metrics[0] != "authbridge_agent_ready" {
		t.Errorf("__name__ selector: %+v", res[2])
	}
}
