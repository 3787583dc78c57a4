package agent

import (
	"context"
	"errors"

	"github.com/kagenti/authbridge-node/pkg/kata"
)

// KataExtension installs the restrictive Kata agent policy on Kata nodes
// and publishes kata.LabelKataPolicy / kata.AnnotationKataPolicySHA256; on
// other nodes it removes them.
type KataExtension struct {
	Installer *kata.NodeInstaller
}

// Name implements NodeExtension.
func (k KataExtension) Name() string { return "kata-policy" }

func kataMarks(label, sha string) NodeMarks {
	return NodeMarks{
		Labels:      map[string]string{kata.LabelKataPolicy: label},
		Annotations: map[string]string{kata.AnnotationKataPolicySHA256: sha},
	}
}

// Install implements NodeExtension.
func (k KataExtension) Install(ctx context.Context) (NodeMarks, error) {
	isKata, _, err := k.Installer.Detect()
	if err != nil {
		return kataMarks("", ""), err
	}
	if !isKata {
		return kataMarks("", ""), nil
	}
	res, err := k.Installer.Install(ctx)
	if err != nil && !errors.Is(err, kata.ErrImageGuestUnsupported) {
		return kataMarks("", ""), err
	}
	label := res.Label()
	sha := res.PolicySHA256
	if label == "" {
		sha = ""
	}
	return kataMarks(label, sha), err
}

// Uninstall implements NodeExtension: restores the Kata configurations.
func (k KataExtension) Uninstall(ctx context.Context) error {
	isKata, _, err := k.Installer.Detect()
	if err != nil || !isKata {
		return err
	}
	return k.Installer.Uninstall(ctx)
}
