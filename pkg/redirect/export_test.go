package redirect

// Test-only access to the text renderings, for the golden files and the
// kernel read-back tests in package redirect_test.

// NFTText is what `nft list table` prints for the spec's tables.
func NFTText(s Spec) string { return nftText(s) }

// RestoreInput is the iptables-restore text Apply feeds a fresh netns.
func RestoreInput(s Spec, f Family) string { return restoreInput(s, f, savedRules{}) }
