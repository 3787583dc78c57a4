package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// DefaultCAFile is the cluster CA projected next to the token.
const DefaultCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

// kubeconfigName is the cluster, user and context name in the kubeconfig.
const kubeconfigName = pluginconf.PluginType

// WriteKubeconfig writes the plugin's kubeconfig (server, CA, bearer
// token) atomically with mode 0600: it holds a credential.
func WriteKubeconfig(path, server string, caData []byte, token string) error {
	switch {
	case path == "":
		return errors.New("kubeconfig path is empty")
	case server == "":
		return errors.New("kubeconfig server is empty: set the API server URL (https://host:port)")
	case !strings.HasPrefix(server, "https://"):
		return fmt.Errorf("kubeconfig server %q: want an https:// URL", server)
	case len(caData) == 0:
		return errors.New("kubeconfig CA data is empty: pass the cluster CA (the service account's ca.crt)")
	case strings.TrimSpace(token) == "":
		return errors.New("kubeconfig token is empty")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{Token: strings.TrimSpace(token)}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName}
	cfg.CurrentContext = kubeconfigName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}
