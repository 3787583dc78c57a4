package kata

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// FieldManager is the field manager of the Node patches this package makes
// (the node agent's event component, so both write as one manager).
const FieldManager = "authbridge-node-agent"

// ClearNodeMarks removes LabelKataPolicy and AnnotationKataPolicySHA256
// from the Node: after an explicit uninstall the node no longer boots the
// policy and must not claim it.
func ClearNodeMarks(ctx context.Context, cs kubernetes.Interface, node string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":      map[string]any{LabelKataPolicy: nil},
		"annotations": map[string]any{AnnotationKataPolicySHA256: nil},
	}})
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("remove %s and %s from node %s: %w", LabelKataPolicy, AnnotationKataPolicySHA256, node, err)
	}
	return nil
}
