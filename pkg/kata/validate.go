package kata

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// PolicyPackage is the package the Kata agent queries (data.agent_policy.X).
const PolicyPackage = "data.agent_policy"

// ValidatePolicy refuses a policy the Kata agent could not use: it must parse
// and compile as Rego v1 (OPA), declare package agent_policy, and also parse
// as Rego v0, because the agent's regorus engine reads v0 unless the module
// says `import rego.v1`.
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
	if _, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV0}); err != nil {
		return fmt.Errorf("policy %s uses Rego v1 keywords without `import rego.v1`; the Kata agent (regorus) reads Rego v0 unless the module opts in: add `import rego.v1` after the package line (%v)", name, err)
	}
	return nil
}
