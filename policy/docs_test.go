package policy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The request table of docs/kata-secure-by-default.md must say what the
// restrictive policy does: every request of agent.proto in exactly one row,
// "allow" rows unconditionally allowed, "allow **only**" rows conditional
// (allowed for the runtimes' requests, denied for an empty one), "**deny**"
// rows denied.
func TestDocsRequestTable(t *testing.T) {
	b, err := os.ReadFile("../docs/kata-secure-by-default.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "| Request | Restrictive | Why |")
	if start < 0 {
		t.Fatal("request table not found")
	}
	table := doc[start:]
	table = table[:strings.Index(table, "\n\n")]
	name := regexp.MustCompile("`([A-Za-z]+)`")
	seen := map[string]string{}
	for _, row := range strings.Split(table, "\n")[2:] {
		cols := strings.Split(row, " | ")
		if len(cols) < 3 {
			t.Fatalf("malformed row %q", row)
		}
		verdict := strings.TrimSpace(cols[1])
		for _, m := range name.FindAllStringSubmatch(cols[0], -1) {
			seen[m[1]] = verdict
		}
	}
	src := Restrictive()
	for _, req := range agentRequests {
		v, ok := seen[req]
		if !ok {
			t.Errorf("%s missing from the docs' request table", req)
			continue
		}
		switch {
		case strings.HasPrefix(v, "allow **only**"):
			if !conditional[req] && req != "CopyFileRequest" {
				t.Errorf("%s: docs say conditional, the policy allows it unconditionally", req)
			}
		case strings.HasPrefix(v, "allow"):
			if got, _ := evalRule(t, src, req, map[string]any{}); !got {
				t.Errorf("%s: docs say allow, the policy denies it", req)
			}
		case strings.HasPrefix(v, "**deny**"):
			if got, _ := evalRule(t, src, req, inputFor(t, req)); got {
				t.Errorf("%s: docs say deny, the policy allows it", req)
			}
		default:
			t.Errorf("%s: verdict %q is neither allow, allow **only** nor **deny**", req, v)
		}
	}
}
