package pods

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// userDeployment is a plain Deployment as a user writes it, labelled for
// deploy/components/sidecar: an app that serves /tmp (where it looks for
// the status file) and says whether it leads.
const userDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
  labels:
    app: myapp
    leader-elector.io/sidecar: enabled
spec:
  replicas: 3
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
    spec:
      containers:
        - name: app
          image: busybox:1.37
          command:
            - /bin/sh
            - -c
            - |
              trap 'exit 0' TERM
              httpd -p 8081 -h /tmp
              while true; do
                if [ -f /tmp/leader_status ]; then echo "leading"; else echo "following"; fi
                sleep 5 & wait $!
              done
`

// componentLease is the Lease the user names, not deploy/rbac's myapp-lock.
const componentLease = "myapp-elector"

// userKustomization is the user's kustomization.yaml, as the component's
// comment tells it, with deploy/ as ../base; harness adds what the test
// node needs (its images, the API server's address: Node.NodeChanges).
func userKustomization(ns, harness string) string {
	return fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources:
  - deployment.yaml
  - ../base/rbac
components:
  - ../base/components/sidecar
configMapGenerator:
  - name: leader-elector
    literals: [lease=%s]
    options:
      disableNameSuffixHash: true
      annotations: {config.kubernetes.io/local-config: "true"}
%s`, ns, componentLease, harness)
}

// TestInstallAsANamespaceAdmin installs the way a team without cluster-admin
// does, as a ServiceAccount bound to the built-in admin ClusterRole in its
// namespace alone: `kubectl apply -k deploy/`, and a plain Deployment of
// its own with deploy/components/sidecar and deploy/rbac, which runs as
// real pods that elect a leader and hand over on a delete. The
// cluster-scoped admission policy is refused to it.
func TestInstallAsANamespaceAdmin(t *testing.T) {
	ctx := t.Context()

	t.Run("deploy/ applies with namespace rights alone", func(t *testing.T) {
		ns := testcluster.Namespace(t, cp)
		admin, err := cp.NamespaceAdmin(ctx, ns, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		// The example scaled to none: only the rights are tested here.
		objs, err := testcluster.KustomizeDeploy(fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - ../base\nreplicas:\n  - name: myapp\n    count: 0\n", ns))
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.ApplyObjectsAs(ctx, admin, ns, objs); err != nil {
			t.Fatalf("a namespace admin cannot apply deploy/: %v", err)
		}
		// Refused, each for its reason: the admission policy is
		// cluster-scoped; SERVICE_NAME's Role grants EndpointSlice writes,
		// which the built-in admin ClusterRole lacks since Kubernetes 1.22
		// (CVE-2021-25740), and RBAC grants only what the granter holds.
		for dir, want := range map[string]string{
			"admission-policy": "cannot patch resource \"validatingadmissionpolicies\"",
			"service-rbac":     "attempting to grant RBAC permissions not currently held",
		} {
			objs, err := testcluster.KustomizeDeploy(fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../base/%s\n", dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := cp.ApplyObjectsAs(ctx, admin, ns, objs); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("a namespace admin applied deploy/%s: %v, want an error saying %q", dir, err, want)
			}
		}
	})

	t.Run("the component takes a StatefulSet too, and leaves unlabelled workloads alone", func(t *testing.T) {
		sts := strings.Replace(strings.Replace(userDeployment, "kind: Deployment", "kind: StatefulSet", 1), "  replicas: 3\n", "  replicas: 3\n  serviceName: myapp\n", 1)
		other := strings.Replace(strings.Replace(userDeployment, "name: myapp\n", "name: unrelated\n", 1), "    leader-elector.io/sidecar: enabled\n", "", 1)
		objs, err := testcluster.KustomizeOverlay(map[string]string{
			"kustomization.yaml": strings.Replace(userKustomization("team", ""), "  - deployment.yaml\n", "  - statefulset.yaml\n  - unrelated.yaml\n", 1),
			"statefulset.yaml":   sts,
			"unrelated.yaml":     other,
		})
		if err != nil {
			t.Fatal(err)
		}
		var labelled []*unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				if c, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "initContainers"); len(c) > 0 {
					t.Errorf("the component added %d init containers to the unlabelled Deployment %s", len(c), o.GetName())
				}
				continue
			}
			labelled = append(labelled, o)
		}
		checkComponentOutput(t, labelled)
	})

	t.Run("the component in a user's Deployment elects and hands over", func(t *testing.T) {
		ns := testcluster.Namespace(t, cp)
		w := &workload{t: t, ns: ns, leaseName: componentLease}
		objs, err := testcluster.KustomizeOverlay(map[string]string{
			"kustomization.yaml": userKustomization(ns, node.NodeChanges(node.Images.Sidecar.Ref)),
			"deployment.yaml":    userDeployment,
		})
		if err != nil {
			t.Fatal(err)
		}
		checkComponentOutput(t, objs)
		admin, err := cp.NamespaceAdmin(ctx, ns, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.ApplyObjectsAs(ctx, admin, ns, objs); err != nil {
			t.Fatalf("a namespace admin cannot apply the component's output: %v", err)
		}
		t.Cleanup(func() {
			if err := cp.DeleteExample(context.Background(), ns, 90*time.Second); err != nil {
				t.Error(err)
			}
		})
		w.waitReady(3, 3*time.Minute)
		w.sample()
		leader := w.leaderNow(30 * time.Second)
		for _, p := range w.pods(true) {
			want := "following"
			if p.Name == leader.Name {
				want = "leading"
			}
			w.appLogSays(&p, want)
		}
		if err := cp.WaitRoles(ctx, ns, testcluster.ExampleApp, leader.Name, 15*time.Second); err != nil {
			t.Error(err)
		}
		pods := cp.Admin.CoreV1().Pods(ns)
		w.handsOverOn("kubectl delete pod", func(leader *corev1.Pod) error {
			return pods.Delete(ctx, leader.Name, metav1.DeleteOptions{})
		})
		w.waitReady(3, 2*time.Minute)
		before := w.leaderNow(30 * time.Second)

		// kubectl leader resign, as the namespace admin: the plugin finds
		// the leader and runs resign in its sidecar by exec.
		dir := t.TempDir()
		bin, err := testcluster.BuildSidecar(dir)
		if err != nil {
			t.Fatal(err)
		}
		plugin := filepath.Join(dir, "kubectl-leader")
		if err := os.Symlink(bin, plugin); err != nil {
			t.Fatal(err)
		}
		kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, "team-admin", dir)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, plugin, "resign", componentLease, "-n", ns, "--kubeconfig", kubeconfig)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		out, err := cmd.CombinedOutput()
		t.Logf("kubectl leader resign %s -n %s:\n%s", componentLease, ns, out)
		if err != nil {
			t.Fatalf("kubectl leader resign: %v", err)
		}
		after := w.leaderNow(30 * time.Second)
		if after.Name == before.Name {
			t.Errorf("kubectl leader resign: %s still leads", before.Name)
		}
	})
}

// checkComponentOutput checks what the component rendered: the Lease name
// from the one ConfigMap in the sidecar and the Role, the status file's
// emptyDir in the app, no ConfigMap left to apply.
func checkComponentOutput(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var d *corev1.Pod // the Deployment's pod template, as a pod
	for _, o := range objs {
		switch o.GetKind() {
		case "ConfigMap":
			t.Errorf("the component left ConfigMap %s to apply; its settings are local-config", o.GetName())
		case "Role":
			names, _, _ := unstructured.NestedSlice(o.Object, "rules")
			rule, _ := names[0].(map[string]any)
			if rn, _ := rule["resourceNames"].([]any); len(rn) != 1 || rn[0] != componentLease {
				t.Errorf("the Role grants Leases %v, want [%s]", rule["resourceNames"], componentLease)
			}
		case "Deployment", "StatefulSet":
			var w struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			b, err := json.Marshal(o.Object)
			if err == nil {
				err = json.Unmarshal(b, &w)
			}
			if err != nil {
				t.Fatal(err)
			}
			d = &corev1.Pod{Spec: w.Spec.Template.Spec}
		}
	}
	if d == nil {
		t.Fatal("no Deployment or StatefulSet rendered")
	}
	if len(d.Spec.InitContainers) != 1 || d.Spec.InitContainers[0].Name != testcluster.SidecarContainer {
		t.Fatalf("init containers = %v, want the sidecar", d.Spec.InitContainers)
	}
	sidecar := d.Spec.InitContainers[0]
	i := slices.IndexFunc(sidecar.Env, func(e corev1.EnvVar) bool { return e.Name == "LEASE_NAME" })
	if i < 0 || sidecar.Env[i].Value != componentLease {
		t.Errorf("the sidecar's LEASE_NAME = %v, want %s", sidecar.Env, componentLease)
	}
	if d.Spec.ServiceAccountName != testcluster.ServiceAccount || d.Spec.AutomountServiceAccountToken == nil || *d.Spec.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %q, automount %v: want leader-elector, its token in the sidecar alone", d.Spec.ServiceAccountName, d.Spec.AutomountServiceAccountToken)
	}
	app := d.Spec.Containers[0]
	if !slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "leader-elector-status" && m.MountPath == "/tmp"
	}) {
		t.Errorf("the app mounts %v, want the status file's emptyDir at /tmp", app.VolumeMounts)
	}
	if sidecar.StartupProbe == nil || sidecar.ReadinessProbe == nil || sidecar.LivenessProbe == nil {
		t.Errorf("the sidecar lacks a probe")
	}
}
