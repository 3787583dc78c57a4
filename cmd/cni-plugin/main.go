// Command authbridge-cni is the chained CNI plugin that programs the
// AuthBridge egress redirect rules in each pod's network namespace. The node
// agent installs it as "authbridge-cni" into the CNI bin dir and appends its
// entry to the conflist. All logic lives in internal/cni.
package main

import (
	"strings"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/kagenti/authbridge-node/internal/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Default().Funcs(), cni.VersionInfo(),
		"authbridge-cni: AuthBridge egress redirect rules as a chained CNI plugin (CNI "+strings.Join(cni.SupportedVersions, ", ")+")")
}
