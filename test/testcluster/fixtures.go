package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// ServiceAccount is the name of the ServiceAccount in deploy/.
const ServiceAccount = "leader-elector"

// AdmissionPolicyLabel opts a namespace into deploy/admission-policy's
// bindings (value "enforce").
const AdmissionPolicyLabel = "leader-elector.io/admission-policy"

// CreateNamespace creates a namespace with a unique name from prefix,
// opted into deploy/admission-policy, as a cluster with it applied would
// label the namespaces of its workloads.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := cp.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{AdmissionPolicyLabel: "enforce"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	return ns.Name, nil
}

// DeleteNamespace deletes a namespace; there is no namespace controller, so
// its objects stay in etcd, which the control plane's removal takes along.
func (cp *ControlPlane) DeleteNamespace(ctx context.Context, ns string) error {
	err := cp.Admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return nil
}

// ApplyManifests server-side applies the YAML files into namespace ns, as
// `kubectl apply -n ns` would: namespaced objects and the ServiceAccount
// subjects of bindings get ns.
func (cp *ControlPlane) ApplyManifests(ctx context.Context, ns string, paths ...string) error {
	for _, path := range paths {
		objs, err := ReadManifests(path)
		if err != nil {
			return err
		}
		if err := cp.ApplyObjects(ctx, ns, objs); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// ApplyObjects server-side applies objs into namespace ns, as ApplyManifests.
func (cp *ControlPlane) ApplyObjects(ctx context.Context, ns string, objs []*unstructured.Unstructured) error {
	return cp.ApplyObjectsAs(ctx, cp.AdminConfig, ns, objs)
}

// ApplyObjectsAs is ApplyObjects as the identity of cfg, such as a
// namespace admin's.
func (cp *ControlPlane) ApplyObjectsAs(ctx context.Context, cfg *rest.Config, ns string, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Admin.Discovery()))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		ri := dyn.Resource(m.Resource)
		var r dynamic.ResourceInterface = ri
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			obj.SetNamespace(ns)
			r = ri.Namespace(ns)
		}
		if gvk.Kind == "RoleBinding" || gvk.Kind == "ClusterRoleBinding" {
			subjects, _, _ := unstructured.NestedSlice(obj.Object, "subjects")
			for _, s := range subjects {
				if sm, ok := s.(map[string]any); ok && sm["kind"] == "ServiceAccount" {
					sm["namespace"] = ns
				}
			}
			_ = unstructured.SetNestedSlice(obj.Object, subjects, "subjects")
		}
		if _, err := r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "testcluster", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
	return nil
}

// ReadManifests decodes every object of a multi-document YAML file.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// ServiceAccountKubeconfig mints a token for ns/sa with TokenRequest and
// writes a kubeconfig with it into dir, so a process runs with exactly the
// rights granted to that ServiceAccount. The token is bound to no pod, so
// deploy/admission-policy.yaml lets it set role=follower only; a sidecar
// standing for a pod gets PodKubeconfig instead.
func (cp *ControlPlane) ServiceAccountKubeconfig(ctx context.Context, ns, sa, dir string) (string, error) {
	token, err := cp.ServiceAccountToken(ctx, ns, sa)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig-"+ns+"-"+sa)
	return path, WriteKubeconfig(path, cp.URL, cp.CAData, token)
}

// NamespaceAdmin returns a client config of a ServiceAccount team-admin of
// ns, bound by a RoleBinding in ns to the built-in ClusterRole admin: a
// namespace admin, not a cluster admin. The admin ClusterRole is filled by
// the clusterrole-aggregation controller (NodeControllers run it).
func (cp *ControlPlane) NamespaceAdmin(ctx context.Context, ns, dir string) (*rest.Config, error) {
	if _, err := cp.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "team-admin"}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("namespace admin of %s: %w", ns, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "team-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "team-admin", Namespace: ns}},
	}
	if _, err := cp.Admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("namespace admin of %s: %w", ns, err)
	}
	kc, err := cp.ServiceAccountKubeconfig(ctx, ns, "team-admin", dir)
	if err != nil {
		return nil, err
	}
	return clientcmd.BuildConfigFromFlags("", kc)
}

// ServiceAccountToken mints a token for ns/sa with TokenRequest.
func (cp *ControlPlane) ServiceAccountToken(ctx context.Context, ns, sa string) (string, error) {
	tr, err := cp.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for %s/%s: %w", ns, sa, err)
	}
	return tr.Status.Token, nil
}

// PodBoundToken mints a token for ns/sa bound to pod ns/pod, as the kubelet
// mints the projected token of every pod: TokenRequest with a boundObjectRef
// of kind Pod, name and uid. The API server puts the pod's name and uid into
// the user's extra (authentication.kubernetes.io/pod-name, .../pod-uid), and
// the token stops working when the pod is deleted. The pod must run as sa.
func (cp *ControlPlane) PodBoundToken(ctx context.Context, ns, sa, pod string) (string, error) {
	p, err := cp.Admin.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for %s/%s bound to pod %s: %w", ns, sa, pod, err)
	}
	tr, err := cp.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for %s/%s bound to pod %s: %w", ns, sa, pod, err)
	}
	return tr.Status.Token, nil
}

// PodKubeconfig writes a kubeconfig into dir whose token for ns/sa is bound
// to pod (see PodBoundToken), so a sidecar process runs with the credentials
// it would have inside that pod.
func (cp *ControlPlane) PodKubeconfig(ctx context.Context, ns, sa, pod, dir string) (string, error) {
	token, err := cp.PodBoundToken(ctx, ns, sa, pod)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig-"+ns+"-"+sa+"-pod-"+pod)
	return path, WriteKubeconfig(path, cp.URL, cp.CAData, token)
}

// PodOptions describe a pod standing for a replica. There is no kubelet, so
// it stays Pending unless MarkRunning is called.
type PodOptions struct {
	Labels map[string]string
	// NodeName schedules the pod, for controllers that skip unscheduled pods.
	NodeName string
}

// CreatePod creates a pod run by the ServiceAccount of deploy/.
func (cp *ControlPlane) CreatePod(ctx context.Context, ns, name string, opts PodOptions) (*corev1.Pod, error) {
	pod, err := cp.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: opts.Labels},
		Spec: corev1.PodSpec{
			ServiceAccountName:           ServiceAccount,
			AutomountServiceAccountToken: ptr.To(false),
			NodeName:                     opts.NodeName,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.invalid/app:test",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	return pod, nil
}

// BuildSidecar builds the leader-elector binary into dir.
func BuildSidecar(dir string) (string, error) { return Build(dir, ".", "leader-elector") }

// Build builds the main package pkg into dir/name. pkg is relative to the
// repository's root: "." is the product; one under ./test/ is built in the
// test tooling's module.
func Build(dir, pkg, name string) (string, error) {
	out := filepath.Join(dir, name)
	root := RepoRoot()
	if rest, ok := strings.CutPrefix(pkg, "./test/"); ok {
		root, pkg = TestRoot(), "./"+rest
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w: %s", pkg, err, stderr.String())
	}
	return out, nil
}

// SidecarOptions describe one sidecar process, standing for the sidecar
// container of pod Pod.
type SidecarOptions struct {
	Binary     string
	Namespace  string
	Pod        string
	Lease      string
	Kubeconfig string
	// Env is added to the Downward API variables, such as LABEL_POD_ROLE=true.
	Env []string
	// Args are the sidecar's arguments, such as "--" and a command.
	Args []string
	// Dir is the pod's directory; its "emptydir" stands for the shared
	// emptyDir holding the status file.
	Dir string
	// AsStarted, for starting the sidecar exactly as another project's
	// elector is started: the environment is Env plus KUBECONFIG alone (no
	// variable of ours), and the process runs as in a pod of its own: with
	// the pod's name as its hostname, and the emptydir as its /tmp (where
	// the default status file is; the kubeconfig is copied there). HealthURL
	// is then HealthURL.
	AsStarted bool
	// HealthURL is the health base URL with AsStarted, if any.
	HealthURL string
	// Hostname, with AsStarted, is the process's hostname in place of Pod,
	// such as a node's name: a hostNetwork pod has its node's hostname.
	Hostname string
	// IP, if set, is the pod's IP: a loopback address of its own, such as
	// 127.0.0.11, as pods have IPs of their own. The sidecar gets POD_IP=IP
	// and listens on IP:HealthPort (PROBE_ADDRESS), so that its peers reach
	// its take-over endpoint at the pod's IP and the port they all share,
	// as in a cluster.
	IP string
	// HealthPort is the health port with IP; 0: a free one.
	HealthPort int
}

// Sidecar is a running leader-elector.
type Sidecar struct {
	Opts       SidecarOptions
	StatusFile string

	mu        sync.Mutex // Restart replaces the process while others look
	p         *Process
	healthURL string
	run       int
}

func (s *Sidecar) proc() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// HealthURL is the base URL of the current process's health port.
func (s *Sidecar) HealthURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthURL
}

// Exited reports whether the current process has ended.
func (s *Sidecar) Exited() bool { return s.proc().Exited() }

// Log returns what the current process wrote.
func (s *Sidecar) Log() string { return s.proc().Log() }

// LogTail returns the last n lines the current process wrote.
func (s *Sidecar) LogTail(n int) string { return s.proc().LogTail(n) }

// Pid is the current process's ID.
func (s *Sidecar) Pid() int { return s.proc().Pid() }

// Signal sends sig to the current process.
func (s *Sidecar) Signal(sig syscall.Signal) error { return s.proc().Signal(sig) }

// Done is closed when the current process has ended.
func (s *Sidecar) Done() <-chan struct{} { return s.proc().Done() }

// ExitErr is the current process's exit error, once it has ended.
func (s *Sidecar) ExitErr() error { return s.proc().ExitErr() }

// StartSidecar starts leader-elector for a pod, with the pod's Downward API
// environment and its own status directory and health port.
func StartSidecar(opts SidecarOptions) (*Sidecar, error) {
	emptyDir := filepath.Join(opts.Dir, "emptydir")
	if err := os.MkdirAll(emptyDir, 0o755); err != nil {
		return nil, fmt.Errorf("make status dir: %w", err)
	}
	s := &Sidecar{Opts: opts, StatusFile: filepath.Join(emptyDir, "leader_status")}
	return s, s.start()
}

func (s *Sidecar) start() error {
	port, err := s.Opts.HealthPort, error(nil)
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.run++
	run := s.run
	s.mu.Unlock()
	host, listen := "127.0.0.1", []string{"HEALTH_PORT=" + strconv.Itoa(port)}
	if s.Opts.IP != "" {
		host = s.Opts.IP
		listen = []string{"POD_IP=" + s.Opts.IP, "PROBE_ADDRESS=" + net.JoinHostPort(s.Opts.IP, strconv.Itoa(port))}
	}
	healthURL := "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	spec := ProcessSpec{Args: s.Opts.Args, Env: append(append([]string{
		"LEASE_NAME=" + s.Opts.Lease,
		"NAMESPACE=" + s.Opts.Namespace,
		"POD_NAME=" + s.Opts.Pod,
		// The same as POD_NAME, which leader-elector takes without it;
		// bench/clientgo-elector reads IDENTITY alone.
		"IDENTITY=" + s.Opts.Pod,
		"KUBECONFIG=" + s.Opts.Kubeconfig,
		"STATUS_FILE=" + s.StatusFile,
	}, listen...), s.Opts.Env...)}
	if s.Opts.AsStarted {
		// The kubeconfig, standing for the pod's mounted token, goes into
		// the pod's own /tmp: the host's is out of its sight.
		tmp := filepath.Dir(s.StatusFile)
		b, err := os.ReadFile(s.Opts.Kubeconfig)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.Opts.Pod, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, ".kubeconfig"), b, 0o600); err != nil {
			return fmt.Errorf("start %s: %w", s.Opts.Pod, err)
		}
		healthURL = s.Opts.HealthURL
		hostname := s.Opts.Pod
		if s.Opts.Hostname != "" {
			hostname = s.Opts.Hostname
		}
		spec = ProcessSpec{Args: s.Opts.Args, Env: append([]string{"KUBECONFIG=/tmp/.kubeconfig"}, s.Opts.Env...),
			CleanEnv: true, Hostname: hostname, Tmp: tmp}
	}
	p, err := StartProcessWith("leader-elector "+s.Opts.Pod, s.Opts.Binary, spec,
		filepath.Join(s.Opts.Dir, fmt.Sprintf("sidecar-%d.log", run)))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.p, s.healthURL = p, healthURL
	s.mu.Unlock()
	return nil
}

// Restart starts the sidecar again after it ended, as the kubelet restarts a
// container: same pod, same emptyDir.
func (s *Sidecar) Restart() error {
	if !s.Exited() {
		return fmt.Errorf("restart %s: it is still running", s.Opts.Pod)
	}
	return s.start()
}

// Kill ends the sidecar with SIGKILL, as a crash or OOM kill would.
func (s *Sidecar) Kill() error { return s.proc().Stop(syscall.SIGKILL, 5*time.Second) }

// Terminate ends the sidecar with SIGTERM, as the kubelet does on pod deletion.
func (s *Sidecar) Terminate() error { return s.proc().Stop(syscall.SIGTERM, 30*time.Second) }

// HasStatusFile reports whether the status file exists.
func (s *Sidecar) HasStatusFile() bool {
	_, err := os.Stat(s.StatusFile)
	return err == nil
}

// Status reads the sidecar's /status JSON.
func (s *Sidecar) Status() (map[string]any, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.HealthURL() + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode /status of %s: %w", s.Opts.Pod, err)
	}
	return m, nil
}

// Get returns the status code of a GET on the health port.
func (s *Sidecar) Get(path string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.HealthURL() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// CreateNode creates a Node object for pods to be scheduled on. There is no
// kubelet; controllers such as the endpointslice controller skip pods whose
// node they cannot find.
func (cp *ControlPlane) CreateNode(ctx context.Context, name string) error {
	_, err := cp.Admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// MarkRunning does what a kubelet would: it sets the pod's IP, phase Running
// and the Ready condition through the status subresource.
func (cp *ControlPlane) MarkRunning(ctx context.Context, ns, name, ip string) error {
	pods := cp.Admin.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("mark pod %s/%s running: %w", ns, name, err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		HostIP:    "127.0.0.1",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark pod %s/%s running: %w", ns, name, err)
	}
	return nil
}

// CreateLeaderService creates a Service selecting app=<app>,role=leader.
func (cp *ControlPlane) CreateLeaderService(ctx context.Context, ns, name, app string) error {
	_, err := cp.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app, "role": "leader"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s/%s: %w", ns, name, err)
	}
	return nil
}

// ServiceEndpoints returns the names of the pods that the Service's
// EndpointSlices list as ready, from one consistent list of slices.
func (cp *ControlPlane) ServiceEndpoints(ctx context.Context, ns, service string) ([]string, error) {
	slices, err := cp.Admin.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service,
	})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of %s/%s: %w", ns, service, err)
	}
	var out []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			out = append(out, ep.TargetRef.Name)
		}
	}
	return out, nil
}
