//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (e *env) helm(args ...string) (string, error) {
	cmd := exec.Command(os.Getenv("E2E_HELM"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Scenario (issue 16): the agent installed with Helm instead of kustomize,
// then upgraded with a changed value: the agents roll (the config checksum
// changed) and keep redirecting. The kustomize install is put back at
// cleanup.
func TestHelmInstallUpgrade(t *testing.T) {
	e := newEnv(t)
	mustEnv(t, "E2E_HELM")
	chart := filepath.Join(mustEnv(t, "E2E_REPO_ROOT"), "charts", "authbridge-node")
	rendered := renderedInstall()
	image := e.agentDaemonSet(t).Spec.Template.Spec.Containers[0].Image
	repo, tag, _ := strings.Cut(image, ":")
	ctx := context.Background()

	// Helm does not adopt objects it did not create: remove the kustomize
	// install (all but the Namespace, which the release lives in).
	e.deleteAgentDS(t)
	for _, args := range [][]string{
		{"-n", agentNS, "delete", "configmap,serviceaccount,role,rolebinding", "-l", "app.kubernetes.io/name=authbridge-node", "--wait"},
		{"delete", "clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding", "-l", "app.kubernetes.io/name=authbridge-node", "--wait"},
	} {
		if out, err := e.kubectl(args...); err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := e.helm("uninstall", "authbridge-node", "-n", agentNS, "--wait", "--timeout=5m"); err != nil {
			t.Errorf("helm uninstall: %v: %s", err, out)
		}
		if out, err := e.kubectl("apply", "-f", rendered); err != nil {
			t.Errorf("reinstall agent: %v: %s", err, out)
		}
		if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
			t.Errorf("agent rollout after reinstall: %v: %s", err, out)
		}
	})
	// The e2e's affinity (test/e2e/overlay) so the force-fail knob works
	// the same way under Helm.
	affinity := `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"` + forceFailLabel + `","operator":"DoesNotExist"}]}]}}}`
	if out, err := e.helm("install", "authbridge-node", chart, "-n", agentNS,
		"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never",
		"--set-json", "affinity="+affinity, "--wait", "--timeout=5m"); err != nil {
		t.Fatalf("helm install: %v: %s", err, out)
	}
	for _, n := range e.nodes() {
		e.waitNodeLabels(t, n, "*", "true")
	}
	ns := e.namespace(t, "e2e-helm")
	srvIP, _ := e.server(t, ns, e.workers[1])
	url := "http://" + srvIP + "/"
	e.createPod(t, ns, e.appPod("installed", "enforce-redirect", e.workers[0], true))
	e.waitRunning(t, ns, "installed")
	if err := e.redirectWorks(ns, "installed", url); err != nil {
		t.Fatalf("pod under the Helm install: %v", err)
	}

	before, err := e.cs.CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node-agent"})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.helm("upgrade", "authbridge-node", chart, "-n", agentNS, "--reuse-values",
		"--set", "config.logLevel=debug", "--wait", "--timeout=5m"); err != nil {
		t.Fatalf("helm upgrade: %v: %s", err, out)
	}
	if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
		t.Fatalf("rollout after the upgrade: %v: %s", err, out)
	}
	after, err := e.cs.CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node-agent"})
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, p := range before.Items {
		old[p.Name] = true
	}
	for _, p := range after.Items {
		if old[p.Name] {
			t.Errorf("agent pod %s was not replaced by the upgrade (config checksum)", p.Name)
		}
	}
	cm, err := e.cs.CoreV1().ConfigMaps(agentNS).Get(ctx, agentConfigMap, metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["config.yaml"], "logLevel: debug") {
		t.Fatalf("config after the upgrade: %v %q", err, cm.Data["config.yaml"])
	}
	e.createPod(t, ns, e.appPod("upgraded", "enforce-redirect", e.workers[0], true))
	e.waitRunning(t, ns, "upgraded")
	if err := e.redirectWorks(ns, "upgraded", url); err != nil {
		t.Fatalf("new pod after the upgrade: %v", err)
	}
	if err := e.redirectWorks(ns, "installed", url); err != nil {
		t.Fatalf("running pod after the upgrade: %v", err)
	}
}
