package decision

import (
	"fmt"
	"net"

	"github.com/kagenti/authbridge-node/internal/unixsock"
)

// Listen creates the decision socket at path, mode 0600 (the plugin runs
// as root; nobody else may ask about pods or pose as the agent); see
// internal/unixsock for the guarantees (stale socket replaced, any other
// file refused, never reachable with a wider mode, removed on Close unless
// a newer agent's socket is there).
func Listen(path string) (net.Listener, error) {
	ln, err := unixsock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("decision %w", err)
	}
	return ln, nil
}
