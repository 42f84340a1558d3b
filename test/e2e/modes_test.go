package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/dropins/compat"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// The Downward API values the modes' pods get in the test.
const (
	modesPod    = "myapp-6d4f9b7c5-x2x7q"
	modesPodIP  = "10.0.0.7"
	modesNode   = "node-a"
	modesPodUID = "0b6f3c4e-1d2a-4f5b-8c9d-0e1f2a3b4c5d"
)

// modeSettings are the parts of config.Config a mode's manifest decides.
type modeSettings struct {
	LeaseName, Namespace, Identity            string
	LeaderHTTP, Probe, StatusEndpoint         string
	Service, ServiceNamespace, ServicePorts   string
	PodIP, NodeName, LogFormat                string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Command                                   []string
	// A drop-in touches no file its original did not: no status file, no
	// control socket.
	StatusFile, ControlSocket string
}

func settingsOf(c config.Config) modeSettings {
	return modeSettings{
		LeaseName: c.LeaseName, Namespace: c.Namespace, Identity: c.Identity,
		LeaderHTTP: c.LeaderHTTPAddress, Probe: c.ProbeAddress, StatusEndpoint: c.StatusEndpoint,
		Service: c.ServiceName, ServiceNamespace: c.ServiceNamespace, ServicePorts: c.ServicePorts,
		PodIP: c.PodIP, NodeName: c.NodeName, LogFormat: c.LogFormat,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod,
		Command:    c.Command,
		StatusFile: c.StatusFile, ControlSocket: c.ControlSocket,
	}
}

// TestModes renders each of deploy/modes/ as `kubectl apply -k` does and
// checks that the manifests do what their comments promise: the sidecar's
// arguments and environment, read as main.go reads them, start the intended
// front end with a valid configuration; the probes and the app's URLs point
// where the sidecar listens; the API server takes every object; and the
// ServiceAccount may do, under the rendered RBAC alone, what the sidecar does
// in that mode, and no more than that on pods and other Leases.
func TestModes(t *testing.T) {
	modes := filepath.Join(testcluster.RepoRoot(), "deploy", "modes")
	for _, tc := range []struct {
		dir, container string
		nativeSidecar  bool
		frontEnd       compat.FrontEnd
		want           func(ns string, c *corev1.Container) modeSettings
		service        bool // SERVICE_NAME: the EndpointSlice writer's RBAC
	}{
		{
			dir: "nais", container: "elector", nativeSidecar: true, frontEnd: compat.NAIS,
			want: func(ns string, _ *corev1.Container) modeSettings {
				return modeSettings{LeaseName: "myapp", Namespace: ns, Identity: modesPod,
					LeaderHTTP: "localhost:4040", Probe: "0.0.0.0:4041", LogFormat: "json", StatusFile: "-",
					LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
			},
		},
		{
			dir: "contrib", container: "elector", frontEnd: compat.GCR,
			want: func(ns string, _ *corev1.Container) modeSettings {
				return modeSettings{LeaseName: "myapp-lock", Namespace: ns, Identity: modesPod,
					LeaderHTTP: "0.0.0.0:4040", Probe: "-", LogFormat: "text", StatusFile: "-",
					LeaseDuration: 10 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: 2500 * time.Millisecond}
			},
		},
		{
			dir: "await-election", container: "my-singleton-server", frontEnd: compat.AwaitElection, service: true,
			want: func(ns string, c *corev1.Container) modeSettings {
				return modeSettings{LeaseName: "myapp-lock", Namespace: ns, Identity: modesPod,
					StatusEndpoint: ":9999", Probe: "-", StatusFile: "-", Service: "myapp-leader", ServiceNamespace: ns,
					ServicePorts: `[{"name":"http","port":8081}]`, PodIP: modesPodIP, NodeName: modesNode, LogFormat: "text",
					LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
					Command: c.Args}
			},
		},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			dir := filepath.Join(modes, tc.dir)
			// The default options are kubectl's: no file from outside dir.
			resmap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatalf("kustomize build deploy/modes/%s: %v", tc.dir, err)
			}
			var objs []*unstructured.Unstructured
			var deploy *appsv1.Deployment
			services := map[string]*corev1.Service{}
			for _, r := range resmap.Resources() {
				m, err := r.Map()
				if err != nil {
					t.Fatal(err)
				}
				u := &unstructured.Unstructured{Object: m}
				objs = append(objs, u)
				typed := decodeStrict(t, u)
				switch o := typed.(type) {
				case *appsv1.Deployment:
					deploy = o
				case *corev1.Service:
					services[o.Name] = o
				}
			}
			if deploy == nil {
				t.Fatalf("deploy/modes/%s has no Deployment", tc.dir)
			}
			ns := deploy.Namespace
			spec := deploy.Spec.Template.Spec
			c, native := findContainer(spec, tc.container)
			if c == nil {
				t.Fatalf("the Deployment has no container %q", tc.container)
			}
			if native != tc.nativeSidecar {
				t.Errorf("container %q is a native sidecar: %v, want %v", tc.container, native, tc.nativeSidecar)
			}

			// main.go's run(): compat.Translate, then config.Load, with the
			// pod's environment and its in-cluster namespace file.
			nsFile := filepath.Join(t.TempDir(), "namespace")
			if err := os.WriteFile(nsFile, []byte(ns), 0o600); err != nil {
				t.Fatal(err)
			}
			env := podEnv(t, ns, c)
			lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			tr, err := compat.Translate(c.Args, lookup)
			if err != nil {
				t.Fatalf("compat.Translate(%q): %v", c.Args, err)
			}
			if tr.FrontEnd != tc.frontEnd {
				t.Errorf("front end = %q, want %q", tr.FrontEnd, tc.frontEnd)
			}
			cfg, err := config.Load(tr.Lookup, config.Sources{
				Hostname:      func() (string, error) { return modesPod, nil },
				NamespaceFile: nsFile,
			})
			if err != nil {
				t.Fatalf("config.Load: %v", tr.Explain(err))
			}
			cfg.Command = tr.Command
			if got, want := settingsOf(cfg), tc.want(ns, c); !reflect.DeepEqual(got, want) {
				t.Errorf("configuration\n got %+v\nwant %+v", got, want)
			}

			// Every probe of the container hits one of the sidecar's
			// listeners, and the app's URLs the leader API.
			listens := listenPorts(cfg)
			for what, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil {
					continue
				}
				port := resolvePort(t, c, p.HTTPGet.Port)
				if listens[port] == "" {
					t.Errorf("%s on port %d: the sidecar listens on %v", what, port, listens)
				}
			}
			// A port the container declares is the sidecar's or, with
			// SERVICE_NAME, the app's endpoint.
			endpoint := map[int32]bool{}
			for _, p := range servicePorts(t, cfg) {
				endpoint[p.Port] = true
			}
			for _, p := range c.Ports {
				if listens[int(p.ContainerPort)] == "" && !endpoint[p.ContainerPort] {
					t.Errorf("containerPort %s %d: the sidecar listens on %v", p.Name, p.ContainerPort, listens)
				}
			}
			for _, app := range spec.Containers {
				for _, e := range app.Env {
					if e.Name != "ELECTOR_GET_URL" && e.Name != "ELECTOR_SSE_URL" {
						continue
					}
					u, err := url.Parse(e.Value)
					if err != nil || u.Host != cfg.LeaderHTTPAddress {
						t.Errorf("%s=%q in container %s: want a URL of the leader API at %s", e.Name, e.Value, app.Name, cfg.LeaderHTTPAddress)
					}
				}
			}
			if tc.service {
				checkServiceMode(t, dir, cfg, c, services)
			}

			// The API server takes it all; then the ServiceAccount, with
			// the rendered RBAC only, does the sidecar's requests. The
			// objects go into a namespace of the test's own (RBAC is
			// namespace-relative).
			testNS := testcluster.Namespace(t, cp)
			if err := cp.ApplyObjects(t.Context(), testNS, objs); err != nil {
				t.Fatalf("the API server refused deploy/modes/%s: %v", tc.dir, err)
			}
			kubeconfig, err := cp.ServiceAccountKubeconfig(t.Context(), testNS, spec.ServiceAccountName, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			checkModeRBAC(t, saClient(t, kubeconfig), testNS, cfg)
		})
	}
}

// decodeStrict decodes u into its typed API object, refusing unknown fields.
func decodeStrict(t *testing.T, u *unstructured.Unstructured) runtime.Object {
	t.Helper()
	obj, err := scheme.Scheme.New(u.GroupVersionKind())
	if err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
		t.Fatalf("%s %s does not decode: %v", u.GetKind(), u.GetName(), err)
	}
	return obj
}

// findContainer returns the container name and whether it is a native
// sidecar (an init container with restartPolicy: Always).
func findContainer(spec corev1.PodSpec, name string) (*corev1.Container, bool) {
	for i, c := range spec.InitContainers {
		if c.Name == name {
			return &spec.InitContainers[i], ptr.Deref(c.RestartPolicy, "") == corev1.ContainerRestartPolicyAlways
		}
	}
	for i, c := range spec.Containers {
		if c.Name == name {
			return &spec.Containers[i], false
		}
	}
	return nil, false
}

// podEnv is the container's environment as the kubelet would give it in a
// pod named modesPod in ns.
func podEnv(t *testing.T, ns string, c *corev1.Container) map[string]string {
	t.Helper()
	fields := map[string]string{
		"metadata.namespace": ns, "metadata.name": modesPod, "metadata.uid": modesPodUID,
		"status.podIP": modesPodIP, "spec.nodeName": modesNode,
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && fields[e.ValueFrom.FieldRef.FieldPath] != "":
			env[e.Name] = fields[e.ValueFrom.FieldRef.FieldPath]
		default:
			t.Fatalf("env %s: the test knows no value for %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// listenPorts are the sidecar's ports under cfg, and what each serves.
func listenPorts(cfg config.Config) map[int]string {
	ports := map[int]string{}
	add := func(addr, what string) {
		if addr == "" {
			return
		}
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		ports[n] = what
	}
	if cfg.HealthAddress() != "" {
		add(cfg.HealthAddress(), "health")
	}
	add(cfg.LeaderHTTPAddress, "leader API")
	add(cfg.StatusEndpoint, "status endpoint")
	add(cfg.MetricsAddr, "metrics")
	return ports
}

// resolvePort turns a probe's port, a number or a name, into a number.
func resolvePort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, port := range c.Ports {
		if port.Name == p.StrVal {
			return int(port.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// checkServiceMode checks the k8s-await-election mode's parts: the image's
// entrypoint is this binary, the Service is selector-less and has the
// endpoint's ports, and the app stays off the sidecar's ports.
func checkServiceMode(t *testing.T, dir string, cfg config.Config, c *corev1.Container, services map[string]*corev1.Service) {
	t.Helper()
	dockerfile, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	copied := regexp.MustCompile(`(?m)^COPY --from=ghcr\.io/leader-elector/leader-elector:v\S+ /leader-elector (\S+)$`).FindSubmatch(dockerfile)
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`).FindSubmatch(dockerfile)
	if copied == nil || entry == nil || !bytes.Equal(copied[1], entry[1]) {
		t.Errorf("the Dockerfile must COPY /leader-elector from our image and make it the ENTRYPOINT:\n%s", dockerfile)
	}
	if len(c.Command) > 0 {
		t.Errorf("command %q replaces the image's entrypoint, the sidecar", c.Command)
	}
	svc := services[cfg.ServiceName]
	if svc == nil {
		t.Fatalf("no Service %s among the objects", cfg.ServiceName)
	}
	if len(svc.Spec.Selector) > 0 {
		t.Errorf("Service %s has a selector %v; the sidecar routes only a selector-less one", svc.Name, svc.Spec.Selector)
	}
	listens := listenPorts(cfg)
	for _, p := range servicePorts(t, cfg) {
		found := false
		for _, sp := range svc.Spec.Ports {
			found = found || sp.Name == p.Name
		}
		if !found {
			t.Errorf("endpoint port %q is not among Service %s's ports %v", p.Name, svc.Name, svc.Spec.Ports)
		}
		if what := listens[int(p.Port)]; what != "" {
			t.Errorf("the app's port %d is the sidecar's %s", p.Port, what)
		}
	}
}

// servicePorts are SERVICE_PORTS, the endpoint's ports, or none.
func servicePorts(t *testing.T, cfg config.Config) []corev1.EndpointPort {
	t.Helper()
	var ports []corev1.EndpointPort
	if cfg.ServicePorts == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(cfg.ServicePorts), &ports); err != nil {
		t.Fatalf("SERVICE_PORTS=%q: %v", cfg.ServicePorts, err)
	}
	return ports
}

// errNotCreated stands for an update whose create failed before.
var errNotCreated = errors.New("not created: the create before failed")

// checkModeRBAC does, as the ServiceAccount, the requests the sidecar makes
// under cfg, and some it must not be allowed.
func checkModeRBAC(t *testing.T, c kubernetes.Interface, ns string, cfg config.Config) {
	ctx := t.Context()
	leases := c.CoordinationV1().Leases(ns)
	byName := metav1.ListOptions{FieldSelector: "metadata.name=" + cfg.LeaseName}
	var lease *coordinationv1.Lease
	type request struct {
		name    string
		do      func() error
		allowed bool
	}
	requests := []request{
		{"create the Lease", func() (err error) {
			lease, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: cfg.LeaseName},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(modesPod)}}, metav1.CreateOptions{})
			return err
		}, true},
		{"get the Lease", func() error { _, err := leases.Get(ctx, cfg.LeaseName, metav1.GetOptions{}); return err }, true},
		{"update the Lease", func() error {
			if lease == nil {
				return errNotCreated
			}
			lease.Spec.LeaseTransitions = ptr.To[int32](1)
			_, err := leases.Update(ctx, lease, metav1.UpdateOptions{})
			return err
		}, true},
		{"list the Lease by name", func() error { _, err := leases.List(ctx, byName); return err }, true},
		{"watch the Lease by name", func() error {
			w, err := leases.Watch(ctx, byName)
			if err == nil {
				w.Stop()
			}
			return err
		}, true},
		{"record an Event", func() error {
			_, err := c.EventsV1().Events(ns).Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{GenerateName: cfg.LeaseName + "-"},
				EventTime:  metav1.NowMicro(), ReportingController: "leader-elector", ReportingInstance: modesPod,
				Action: "Leading", Reason: "LeaderElection", Type: corev1.EventTypeNormal,
				Regarding: corev1.ObjectReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: ns, Name: cfg.LeaseName},
			}, metav1.CreateOptions{})
			return err
		}, true},
		{"get another Lease", func() error { _, err := leases.Get(ctx, "other-lock", metav1.GetOptions{}); return err }, false},
		{"get a pod (no LABEL_POD_ROLE: no pods rule)", func() error {
			_, err := c.CoreV1().Pods(ns).Get(ctx, modesPod, metav1.GetOptions{})
			return err
		}, false},
	}
	if cfg.ServiceName != "" {
		slices := c.DiscoveryV1().EndpointSlices(ns)
		name := serviceslice.SliceName(cfg.ServiceName)
		var slice *discoveryv1.EndpointSlice
		requests = append(requests,
			request{"get the Service", func() error {
				_, err := c.CoreV1().Services(ns).Get(ctx, cfg.ServiceName, metav1.GetOptions{})
				return err
			}, true},
			request{"look for a left-behind Endpoints", func() error {
				_, err := c.CoreV1().Endpoints(ns).Get(ctx, cfg.ServiceName, metav1.GetOptions{}) //nolint:staticcheck // what the sidecar reads
				if apierrors.IsNotFound(err) {
					return nil // allowed to look; there is none
				}
				return err
			}, true},
			request{"create the EndpointSlice", func() (err error) {
				slice, err = slices.Create(ctx, &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: cfg.ServiceName, discoveryv1.LabelManagedBy: serviceslice.ManagedBy}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{cfg.PodIP}}},
				}, metav1.CreateOptions{})
				return err
			}, true},
			request{"get the EndpointSlice", func() error { _, err := slices.Get(ctx, name, metav1.GetOptions{}); return err }, true},
			request{"update the EndpointSlice", func() error {
				if slice == nil {
					return errNotCreated
				}
				slice.Endpoints[0].Addresses = []string{"10.0.0.8"}
				_, err := slices.Update(ctx, slice, metav1.UpdateOptions{})
				return err
			}, true},
			request{"delete the EndpointSlice", func() error { return slices.Delete(ctx, name, metav1.DeleteOptions{}) }, true},
			request{"get another EndpointSlice", func() error { _, err := slices.Get(ctx, "other", metav1.GetOptions{}); return err }, false},
		)
	}
	for _, r := range requests {
		err := r.do()
		switch {
		case r.allowed && err != nil:
			t.Errorf("%s: want allowed, got %v", r.name, err)
		case !r.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: want 403, got %v", r.name, err)
		}
	}
}
