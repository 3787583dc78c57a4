package podmode

import "testing"

func TestLabels(t *testing.T) {
	for _, m := range Modes {
		back, ok := FromLabel(m.Label())
		if !ok || back != m {
			t.Errorf("FromLabel(%q) = %q, %v; want %q", m.Label(), back, ok, m)
		}
	}
	if Skip.Label() != "skipped" || EnforceRedirect.Label() != "enforce-redirect" {
		t.Errorf("labels changed: %q %q", Skip.Label(), EnforceRedirect.Label())
	}
	if _, ok := FromLabel("skip"); ok {
		t.Error(`"skip" is a record word, not a label`)
	}
}
