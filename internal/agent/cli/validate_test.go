package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestValidateBadFlags: bad input names the flag and the expected form,
// exit code 2, nothing is checked.
func TestValidateBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", "--targets", "192.0.2.1"}, `--targets: "192.0.2.1" is not ip:port`},
		{[]string{"validate", "--targets", "2001:db8::1:9"}, `is not ip:port ([v6]:port for IPv6)`},
		{[]string{"validate", "--port", "0"}, "--port 0: want 1-65535"},
		{[]string{"validate", "--port", "70000"}, "--port 70000: want 1-65535"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
