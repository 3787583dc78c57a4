package redirect

// Test-only access to the text renderings, for the golden files and the
// kernel read-back tests in package redirect_test.

// NFTText is what `nft list table` prints for the spec's tables.
func NFTText(s Spec) string { return nftText(s) }

// RestoreInput is the iptables-restore text Apply feeds a fresh netns.
func RestoreInput(s Spec, f Family) string { return restoreInput(s, f, savedRules{}) }

// V1Rules returns s rendering the rule set of security-model-v1, kept so
// the bypass tests can show each hole open in the old rules.
func V1Rules(s Spec) Spec { s.v1Rules = true; return s }
