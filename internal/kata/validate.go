package kata

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/kagenti/authbridge-node/policy"
)

// PolicyPackage is the package the Kata agent queries (data.agent_policy.X).
const PolicyPackage = "data.agent_policy"

// ValidatePolicy refuses a policy the Kata agent could not use: it must parse
// and compile as Rego v1 (OPA; the agent's regorus 0.9.1 parses v1 too),
// declare package agent_policy, and call only builtins the agent's regorus
// has (policy.RegorusSubset): a policy regorus cannot load makes the agent
// refuse it, and every pod of that guest fails.
func ValidatePolicy(name string, src []byte) error {
	m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return fmt.Errorf("policy %s does not parse as Rego v1: %w", name, err)
	}
	if got := m.Package.Path.String(); got != PolicyPackage {
		return fmt.Errorf("policy %s declares package %s: the Kata agent only queries %s, write `package agent_policy`", name, got, PolicyPackage)
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(map[string]*ast.Module{name: m}); c.Failed() {
		return fmt.Errorf("policy %s does not compile: %w", name, c.Errors)
	}
	return policy.RegorusSubset(name, src)
}
