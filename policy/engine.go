package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The Kata agent evaluates policies with regorus, not OPA. kata-containers
// 4.1.0 pins regorus at 898643129e (version 0.9.1 plus microsoft/regorus#624)
// with default features off and only "arc", "base64", "base64url", "regex"
// and "std" on (src/agent/policy/Cargo.toml), and its Engine::new parses
// Rego v1 (rego_v1: true in src/engine.rs). regorus cannot be built here
// (its crates are not reachable), so the shipped policies are kept to the
// subset it has: Rego v1 syntax, which OPA checks, and the builtins below,
// which RegorusSubset checks. A builtin outside this list makes the agent
// fail to load the policy, and every pod of that guest fails.
//
// regorusBuiltins is what src/builtins/*.rs register at that commit when
// the modules behind other features (glob, graph, http, net, opa-runtime,
// semver, time, uuid, hex, urlquery, yaml, jsonschema) are compiled out.
var regorusBuiltins = wordSet(
	// numbers.rs, aggregates.rs, arrays.rs, sets.rs
	"abs ceil floor numbers.range numbers.range_step rand.intn round",
	"count max min product sort sum",
	"array.concat array.reverse array.slice",
	"intersection union",
	// objects.rs (json.match_schema/verify_schema need "jsonschema")
	"json.filter json.remove object.filter object.get object.keys object.remove object.subset object.union object.union_n",
	// strings.rs
	"concat contains endswith format_int indexof indexof_n lower replace split sprintf startswith "+
		"strings.any_prefix_match strings.any_suffix_match strings.count strings.replace_n strings.reverse "+
		"substring trim trim_left trim_prefix trim_right trim_space trim_suffix upper",
	// regex.rs ("regex")
	"regex.find_n regex.globs_match regex.is_valid regex.match regex.replace regex.split regex.template_match",
	// bitwise.rs, conversions.rs, types.rs
	"bits.and bits.lsh bits.negate bits.or bits.rsh bits.xor",
	"to_number",
	"is_array is_boolean is_null is_number is_object is_set is_string type_name",
	// encoding.rs with "base64", "base64url" (json.* are unconditional)
	"base64.decode base64.encode base64.is_valid base64url.decode base64url.encode base64url.encode_no_pad "+
		"json.is_valid json.marshal json.marshal_with_options json.unmarshal",
	// tracing.rs, and print, which the interpreter handles itself
	"trace print",
)

func wordSet(groups ...string) map[string]bool {
	m := map[string]bool{}
	for _, g := range groups {
		for _, w := range strings.Fields(g) {
			m[w] = true
		}
	}
	return m
}

// opaOperators are OPA's names for Rego's own operators (==, :=, !=, <, +,
// &, `in`, ...): regorus parses these as expressions, not builtin calls.
var opaOperators = map[string]bool{
	"eq": true, "assign": true, "equal": true, "neq": true, "lt": true, "lte": true, "gt": true, "gte": true,
	"plus": true, "minus": true, "mul": true, "div": true, "rem": true, "and": true, "or": true,
	"internal.member_2": true, "internal.member_3": true,
}

// RegorusSubset returns an error naming every call in the Rego module src
// to a builtin the Kata agent's regorus lacks. Calls to the module's own
// functions are fine.
func RegorusSubset(name string, src []byte) error {
	m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return fmt.Errorf("policy %s does not parse as Rego v1: %w", name, err)
	}
	own := map[string]bool{}
	for _, r := range m.Rules {
		own[r.Head.Ref().String()] = true
	}
	bad := map[string]bool{}
	check := func(op ast.Ref) {
		n := op.String()
		if !own[n] && !opaOperators[n] && !regorusBuiltins[n] {
			bad[n] = true
		}
	}
	ast.WalkExprs(m, func(e *ast.Expr) bool {
		if e.IsCall() {
			check(e.Operator())
		}
		return false
	})
	ast.WalkTerms(m, func(t *ast.Term) bool {
		if c, ok := t.Value.(ast.Call); ok {
			if r, ok := c[0].Value.(ast.Ref); ok {
				check(r)
			}
		}
		return false
	})
	if len(bad) == 0 {
		return nil
	}
	var names []string
	for n := range bad {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("policy %s calls %s, which the Kata agent's regorus (0.9.1, kata-containers 4.1.0 features) does not have: the agent would refuse the policy and every pod would fail; rewrite with the builtins regorus has (see policy/engine.go)", name, strings.Join(names, ", "))
}
