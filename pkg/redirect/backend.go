package redirect

import (
	"fmt"
	"strings"
)

// New returns the backend with the given name. The backend works on the
// network namespace of the calling OS thread at the time Apply, Verify or
// Remove run (not at construction), so callers construct it anywhere and
// call its methods inside ns.Do.
func New(name string) (Backend, error) {
	switch name {
	case BackendNFTables:
		return &nftBackend{}, nil
	case BackendIPTablesNFT:
		return newIPTablesBackend(name, "nft"), nil
	case BackendIPTablesLegacy:
		return newIPTablesBackend(name, "legacy"), nil
	}
	return nil, fmt.Errorf("unknown redirect backend %q: allowed values are %s", name, strings.Join(quoted(AllBackends), ", "))
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
