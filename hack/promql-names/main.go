// Command promql-names parses PromQL expressions with Prometheus' own parser
// (github.com/prometheus/prometheus/promql/parser) and prints the metric
// names each selects, so tests can check dashboards and alerts against the
// agent's registry.
//
// It is a module of its own, built into the tools cache by
// hack/build-tools.sh, so the parser's dependencies never enter the agent's
// go.mod (they would raise versions of modules the shipped binaries link).
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON array
// of {"expr", "metrics", "error"} in the same order. Exit status 0 even when
// an expression does not parse: the caller reports which one and why.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "promql-names: stdin must be a JSON array of strings: %v\n", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(exprs))
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		out = append(out, names(p, e))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "promql-names: %v\n", err)
		os.Exit(1)
	}
}

func names(p parser.Parser, e string) result {
	r := result{Expr: e, Metrics: []string{}}
	expr, err := p.ParseExpr(e)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	seen := map[string]bool{}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" { // {__name__="..."} form
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		if name == "" {
			r.Error = fmt.Sprintf("selector %s names no metric", vs)
			return nil
		}
		seen[name] = true
		return nil
	})
	for n := range seen {
		r.Metrics = append(r.Metrics, n)
	}
	sort.Strings(r.Metrics)
	return r
}
