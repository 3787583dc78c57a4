// Package policy carries the Kata agent policies authbridge-node ships, as
// the exact bytes of the .rego files beside this file, so the node agent,
// the initdata generator and the tests all use one copy.
package policy

import (
	_ "embed"
	"fmt"
	"strings"
)

// Preset names, as the `node-agent kata initdata --preset` flag takes them.
const (
	PresetRestrictive = "restrictive"
	PresetDenyLogs    = "deny-logs"
	PresetAllowExec   = "allow-exec"
)

// Presets lists the preset names, default first.
var Presets = []string{PresetRestrictive, PresetDenyLogs, PresetAllowExec}

var (
	//go:embed default-restrictive.rego
	restrictive []byte
	//go:embed deny-logs.rego
	denyLogs []byte
	//go:embed allow-exec.rego
	allowExec []byte
)

// Preset returns a copy of the named preset's Rego source.
func Preset(name string) ([]byte, error) {
	var src []byte
	switch name {
	case PresetRestrictive:
		src = restrictive
	case PresetDenyLogs:
		src = denyLogs
	case "allow-logs":
		return nil, fmt.Errorf("Kata policy preset %q was removed: %s allows reading logs (a denied read makes chatty containers block, see docs/kata-secure-by-default.md); use %s, or %s to refuse logs", name, PresetRestrictive, PresetRestrictive, PresetDenyLogs)
	case PresetAllowExec:
		src = allowExec
	default:
		return nil, fmt.Errorf("unknown Kata policy preset %q: allowed values are %s", name, strings.Join(Presets, ", "))
	}
	return append([]byte(nil), src...), nil
}

// Restrictive returns a copy of default-restrictive.rego, the policy
// installed on Kata nodes by default.
func Restrictive() []byte { return append([]byte(nil), restrictive...) }
