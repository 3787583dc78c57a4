package kata

import (
	"fmt"
	"regexp"

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

// helmProviderName is a provider key of the peerpods chart (aws, azure,
// gcp, ibmcloud, libvirt, ...): a YAML-safe word.
var helmProviderName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// RenderPeerPodsHelmValues renders a values file for the peerpods Helm
// chart of cloud-api-adaptor (src/cloud-api-adaptor/install/charts/peerpods
// at fbdde756): its templates/configmap.yaml writes every key of
// providerConfigs.<provider> into peer-pods-cm, so INITDATA set there
// survives `helm upgrade`, which a kubectl patch of the ConfigMap does not.
// Pass it after the provider's values (`-f providers/<provider>.yaml -f
// this`): Helm merges the maps key by key.
func RenderPeerPodsHelmValues(doc *InitdataDocument, provider string) ([]byte, error) {
	if !helmProviderName.MatchString(provider) {
		return nil, fmt.Errorf("--helm-provider %q: want the chart's provider key (aws, azure, gcp, ibmcloud, libvirt, ...)", provider)
	}
	v := map[string]any{"providerConfigs": map[string]any{provider: map[string]string{PeerPodsInitdataKey: doc.Annotation}}}
	y, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("render peerpods Helm values: %w", err)
	}
	head := fmt.Sprintf("# Values for the cloud-api-adaptor peerpods Helm chart: the default initdata of every peer pod\n# without its own cc_init_data annotation. Pass after the provider's values:\n#   helm upgrade --install peerpods <chart> -f providers/%s.yaml -f <this file>\n# initdata digest (%s): %s\n", provider, doc.Algorithm, doc.DigestHex())
	return append([]byte(head), y...), nil
}
