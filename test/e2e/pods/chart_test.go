package pods

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// charts is the repository's charts/ directory.
var charts = filepath.Join(testcluster.RepoRoot(), "charts")

// exampleChart loads charts/example with charts/leader-elector as its
// dependency, as `helm dependency build` would place it.
func exampleChart(t *testing.T) *chart.Chart {
	t.Helper()
	lib, err := loader.Load(filepath.Join(charts, "leader-elector"))
	if err != nil {
		t.Fatal(err)
	}
	app, err := loader.Load(filepath.Join(charts, "example"))
	if err != nil {
		t.Fatal(err)
	}
	app.AddDependency(lib)
	return app
}

// helmConfig is helm's action configuration for namespace ns with the
// kubeconfig at path, as `helm --kubeconfig path -n ns` has it.
func helmConfig(t *testing.T, path, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &path, &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// kubeVersion is the local control plane's, for what renders without it
// (helm template, helm lint).
func kubeVersion(t *testing.T) *common.KubeVersion {
	t.Helper()
	v, err := common.ParseKubeVersion("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// clientOnly is `helm template`: an install that renders without a cluster.
func clientOnly(t *testing.T, ns string) *action.Install {
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy, install.ReleaseName, install.Namespace = action.DryRunClient, "r", ns
	install.Replace, install.KubeVersion = true, kubeVersion(t)
	return install
}

// render renders ch as `helm template` does (no cluster), with vals.
func render(t *testing.T, ch *chart.Chart, ns string, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	install := clientOnly(t, ns)
	rel, err := install.RunWithContext(t.Context(), ch, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return manifestObjects(t, rel.(*release.Release).Manifest)
}

func manifestObjects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("the rendered manifest does not decode: %v\n%s", err, manifest)
		}
		if m != nil {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// TestChartLintsAndRendersWhatDeployHas: helm lint (strict) of the chart
// and of the example that depends on it; the chart's RBAC and admission
// policy render to what deploy/ applies (no drift between the two), its
// values schema refuses what the sidecar would refuse, and no image is
// :latest.
func TestChartLintsAndRendersWhatDeployHas(t *testing.T) {
	lint := action.NewLint()
	lint.Strict, lint.WithSubcharts, lint.KubeVersion = true, true, kubeVersion(t)
	for _, tc := range []struct {
		path string
		vals map[string]any
	}{
		{filepath.Join(charts, "leader-elector"), map[string]any{"lease": "myapp-lock"}},
		{filepath.Join(charts, "leader-elector"), map[string]any{"lease": "myapp-lock", "admissionPolicy": map[string]any{"create": true},
			"podMonitor": map[string]any{"enabled": true, "selector": map[string]any{"app": "myapp"}}, "prometheusRule": map[string]any{"enabled": true}}},
	} {
		if r := lint.Run([]string{tc.path}, tc.vals); len(r.Errors) > 0 || r.TotalChartsLinted != 1 {
			t.Errorf("helm lint --strict %s: %d linted, errors %v, messages %v", tc.path, r.TotalChartsLinted, r.Errors, r.Messages)
		}
	}

	lib, err := loader.Load(filepath.Join(charts, "leader-elector"))
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, lib, "team", map[string]any{"lease": "myapp-lock", "rbac": map[string]any{"serviceName": "myapp-leader"},
		"admissionPolicy": map[string]any{"create": true},
		"podMonitor":      map[string]any{"enabled": true, "selector": map[string]any{"app": "myapp"}}, "prometheusRule": map[string]any{"enabled": true}})
	byKind := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()+"/"+o.GetName()] = append(byKind[o.GetKind()+"/"+o.GetName()], o)
	}
	deploy := filepath.Join(testcluster.RepoRoot(), "deploy")
	for _, file := range []string{"rbac/rbac.yaml", "service-rbac/service-rbac.yaml", "admission-policy/admission-policy.yaml"} {
		want, err := testcluster.ReadManifests(filepath.Join(deploy, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			key := w.GetKind() + "/" + w.GetName()
			got := byKind[key]
			if len(got) != 1 {
				t.Errorf("the chart renders %d of deploy/%s's %s", len(got), file, key)
				continue
			}
			for _, field := range []string{"rules", "roleRef", "spec"} {
				g, _, _ := unstructured.NestedFieldNoCopy(got[0].Object, field)
				w, _, _ := unstructured.NestedFieldNoCopy(w.Object, field)
				if !reflect.DeepEqual(normalize(g), normalize(w)) {
					t.Errorf("%s: the chart's %s differs from deploy/%s's:\nchart:  %v\ndeploy: %v", key, field, file, g, w)
				}
			}
		}
	}
	rule := byKind["PrometheusRule/r-leader-elector"]
	if len(rule) != 1 || !strings.Contains(fmt.Sprint(rule[0].Object), `leader_election_master_status{name="myapp-lock", namespace="team"}`) {
		t.Errorf("the PrometheusRule does not alert on the Lease myapp-lock: %v", rule)
	}
	if pm := byKind["PodMonitor/r-leader-elector"]; len(pm) != 1 {
		t.Errorf("no PodMonitor rendered")
	}

	// The example: the sidecar from the named templates, no :latest.
	app := render(t, exampleChart(t), "team", nil)
	var manifest bytes.Buffer
	for _, o := range app {
		fmt.Fprintln(&manifest, o.Object)
	}
	if strings.Contains(manifest.String(), ":latest") {
		t.Errorf("the example renders an image :latest:\n%s", manifest.String())
	}
	if !strings.Contains(manifest.String(), "ghcr.io/leader-elector/leader-elector:v0.1.0") {
		t.Errorf("the example's sidecar is not the published image:\n%s", manifest.String())
	}

	// The schema refuses what the sidecar would refuse, before anything is applied.
	for _, vals := range []map[string]any{
		{},                   // no lease
		{"lease": "My_Lock"}, // not a Lease name
		{"lease": "l", "image": map[string]any{"tag": "latest"}},
		{"lease": "l", "healthPort": 0},
		{"lease": "l", "typo": true},
	} {
		if _, err := clientOnly(t, "team").RunWithContext(t.Context(), lib, vals); err == nil {
			t.Errorf("values %v: rendered, want the schema to refuse them", vals)
		}
	}
}

// normalize makes decoded YAML comparable: every number an int64.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range maps.All(x) {
			m[k] = normalize(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = normalize(e)
		}
		return s
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return v
}

// TestHelmInstallElectsAndHandsOver installs charts/example, which adds the
// sidecar to its Deployment by the chart's named templates, with helm's own
// install action as a namespace admin (a ServiceAccount bound to the
// built-in admin ClusterRole in the namespace alone), into real pods that
// pull the release image; one leader, and a handover on a delete.
func TestHelmInstallElectsAndHandsOver(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	dir := t.TempDir()
	if _, err := cp.NamespaceAdmin(ctx, ns, dir); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, "team-admin", dir)
	if err != nil {
		t.Fatal(err)
	}
	sidecar, sidecarTag := testcluster.SplitRef(node.Images.Sidecar.Ref)
	app, appTag := testcluster.SplitRef(node.Images.App.Ref)
	vals := map[string]any{
		"image": map[string]any{"repository": app, "tag": appTag, "pullPolicy": "Never"},
		"leader-elector": map[string]any{
			"image": map[string]any{"repository": sidecar, "tag": sidecarTag},
			// No kube-proxy on the test node: the API server's address.
			"extraEnv": []any{
				map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": node.IP.String()},
				map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": fmt.Sprint(node.APIPort)},
			},
		},
	}

	// What `helm install --dry-run=server` checks: the API server takes
	// every object, as the namespace admin.
	cfg := helmConfig(t, kubeconfig, ns)
	dry := action.NewInstall(cfg)
	dry.DryRunStrategy, dry.ReleaseName, dry.Namespace, dry.WaitStrategy = action.DryRunServer, "myapp", ns, kube.HookOnlyStrategy
	if _, err := dry.RunWithContext(ctx, exampleChart(t), vals); err != nil {
		t.Fatalf("helm install --dry-run=server: %v", err)
	}

	install := action.NewInstall(cfg)
	// The test waits for the pods itself.
	install.ReleaseName, install.Namespace, install.WaitStrategy = "myapp", ns, kube.HookOnlyStrategy
	install.SubNotes = true // helm install --render-subchart-notes: the chart's NOTES.txt
	rel, err := install.RunWithContext(ctx, exampleChart(t), vals)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.DeleteExample(context.Background(), ns, 90*time.Second); err != nil {
			t.Error(err)
		}
	})
	if notes := rel.(*release.Release).Info.Notes; !strings.Contains(notes, "kubectl leader status myapp-lock -n "+ns) {
		t.Errorf("NOTES.txt says:\n%s", notes)
	}
	w := &workload{t: t, ns: ns}
	w.waitReady(3, 3*time.Minute)
	w.sample()
	leader := w.leaderNow(30 * time.Second)
	for _, p := range w.pods(true) {
		if !slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == testcluster.SidecarContainer }) {
			t.Errorf("%s has no sidecar", p.Name)
		}
	}
	if err := cp.WaitRoles(ctx, ns, testcluster.ExampleApp, leader.Name, 15*time.Second); err != nil {
		t.Error(err)
	}
	w.handsOverOn("kubectl delete pod", func(leader *corev1.Pod) error {
		return cp.Admin.CoreV1().Pods(ns).Delete(ctx, leader.Name, metav1.DeleteOptions{})
	})
	w.waitReady(3, 2*time.Minute)
	w.leaderNow(30 * time.Second)
}
