// Command node-agent is the authbridge node agent (DaemonSet):
//
//	node-agent [run] [flags]   install the plugin, probe, label, serve metrics
//	node-agent probe [flags]   probe the redirect backends once, print JSON
//	node-agent version
//	node-agent kata ...        Kata policy tools (node-agent kata help)
//	node-agent validate [flags] in-pod check that egress is redirected (init container)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kagenti/authbridge-node/internal/agent/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
