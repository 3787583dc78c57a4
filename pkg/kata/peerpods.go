package kata

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// Peer-pods (cloud-api-adaptor) names, checked in
// confidential-containers/cloud-api-adaptor at fbdde756 (2026-08-21): the
// adaptor reads its configuration from ConfigMap peer-pods-cm through
// envFrom, and INITDATA is the default initdata for every pod without a
// cc_init_data annotation (pkg/adaptor/cloud/cloud.go).
const (
	PeerPodsNamespace    = "confidential-containers-system"
	PeerPodsConfigMap    = "peer-pods-cm"
	PeerPodsInitdataKey  = "INITDATA"
	peerPodsDocumentNote = "# Merge into the existing ConfigMap (it holds the cloud provider settings too):\n#   kubectl -n %s patch configmap %s --type merge --patch-file <this file>\n# then restart the cloud-api-adaptor DaemonSet (it reads the ConfigMap as environment):\n#   kubectl -n %s rollout restart daemonset cloud-api-adaptor-daemonset\n# initdata digest (%s): %s\n"
)

// RenderPeerPodsConfigMap renders a ConfigMap that sets doc as the
// peer-pods default initdata, so peer-pods guests get the same policy a
// bare-metal Kata node installs. It carries only the INITDATA key: apply it
// as a merge patch, not a replacement. namespace "" means PeerPodsNamespace.
func RenderPeerPodsConfigMap(doc *InitdataDocument, namespace string) ([]byte, error) {
	if namespace == "" {
		namespace = PeerPodsNamespace
	}
	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"name": PeerPodsConfigMap, "namespace": namespace},
		"data":       map[string]string{PeerPodsInitdataKey: doc.Annotation},
	}
	y, err := yaml.Marshal(cm)
	if err != nil {
		return nil, fmt.Errorf("render peer-pods ConfigMap: %w", err)
	}
	head := fmt.Sprintf(peerPodsDocumentNote, namespace, PeerPodsConfigMap, namespace, doc.Algorithm, doc.DigestHex())
	return append([]byte(head), y...), nil
}

// RenderPodAnnotation renders the pod metadata snippet carrying doc.
func RenderPodAnnotation(doc *InitdataDocument) ([]byte, error) {
	m := map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationInitdata: doc.Annotation}}}
	y, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("render annotation: %w", err)
	}
	head := fmt.Sprintf("# initdata digest (%s): %s\n", doc.Algorithm, doc.DigestHex())
	return append([]byte(head), y...), nil
}
