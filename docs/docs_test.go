// Package docs keeps the operator documentation true to the code: the
// security model version, the opt-in error messages quoted verbatim, and the
// metric names.
package docs

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/pkg/config"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecurityModelVersion(t *testing.T) {
	if config.SecurityModelDoc != "docs/security-model.md" {
		t.Fatalf("config.SecurityModelDoc = %q; this test reads docs/security-model.md", config.SecurityModelDoc)
	}
	doc := read(t, "security-model.md")
	head := strings.Join(strings.SplitN(doc, "\n", 6)[:5], "\n")
	if !strings.Contains(head, "**Version: `"+config.SecurityModelVersion+"`**") {
		t.Fatalf("security-model.md must state its version %q at the top; the head is:\n%s", config.SecurityModelVersion, head)
	}
	// No other version may be named as current anywhere in the docs.
	re := regexp.MustCompile(`security-model-v\d+`)
	for _, f := range []string{"security-model.md", "operations.md", "architecture.md"} {
		for _, v := range re.FindAllString(read(t, f), -1) {
			if v != config.SecurityModelVersion && v != "security-model-v0" && !slices.Contains(config.PreviousSecurityModelVersions, v) {
				t.Errorf("%s names %s; the current version is %s", f, v, config.SecurityModelVersion)
			}
		}
	}
}

// The opt-in errors are quoted verbatim in security-model.md: produce them
// from the real parser and find each in the document.
func TestOptInErrorsQuotedVerbatim(t *testing.T) {
	doc := read(t, "security-model.md")
	for _, in := range []string{
		"allowCooperative: true\n",
		"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n",
		"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v1\n",
		"defaultMode: none\n",
	} {
		_, err := config.ParseAgent([]byte(in))
		if err == nil {
			t.Fatalf("ParseAgent(%q) accepted", in)
		}
		if !strings.Contains(doc, "  "+err.Error()+"\n") {
			t.Errorf("security-model.md does not quote the error for %q:\n%s", in, err)
		}
	}
	// And the opt-in snippet itself parses.
	if _, err := config.ParseAgent([]byte("allowCooperative: true\nacknowledgeCooperativeRisks: \"" + config.SecurityModelVersion + "\"\n")); err != nil {
		t.Fatal(err)
	}
}

// registeredMetrics lists the fully qualified names of every collector in
// metrics.Metrics, from their descriptors (Gather would omit empty vectors).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.NewMetrics(prometheus.NewRegistry())
	names := map[string]bool{}
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if sm := re.FindStringSubmatch(d.String()); sm != nil {
				names[sm[1]] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no metrics found in metrics.Metrics")
	}
	return names
}

func TestMetricNames(t *testing.T) {
	registered := registeredMetrics(t)
	re := regexp.MustCompile(`\bauthbridge_[a-z_]+[a-z]`)
	for _, f := range []string{"operations.md", "security-model.md", "architecture.md"} {
		for _, name := range re.FindAllString(read(t, f), -1) {
			base := name
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suf); ok && registered[b] {
					base = b
				}
			}
			if !registered[base] {
				t.Errorf("%s mentions %s, which internal/metrics does not define", f, name)
			}
		}
	}
	ops := read(t, "operations.md")
	var missing []string
	for name := range registered {
		if !strings.Contains(ops, "`"+name+"`") {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("operations.md's metrics table lacks %v", missing)
	}
}

// Every mode, annotation and ConfigMap name the docs build on is the one the
// code uses.
func TestNamesMatchCode(t *testing.T) {
	all := read(t, "security-model.md") + read(t, "operations.md") + read(t, "architecture.md")
	for _, s := range []string{
		config.AnnotationEgressEnforcement,
		config.NamespaceConfigMap,
		config.NamespaceConfigMapKey,
		config.DefaultSidecarContainerName,
		string(config.ModeEnforceRedirect), string(config.ModeAuto), string(config.ModeNone),
	} {
		if !strings.Contains(all, s) {
			t.Errorf("the docs never mention %q", s)
		}
	}
}
