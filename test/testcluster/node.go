package testcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeControllers are the kube-controller-manager controllers a Node needs
// to run a Deployment with a Service: Deployments and ReplicaSets make pods,
// the garbage collector deletes what they own, root-ca-cert-publisher makes
// the kube-root-ca.crt ConfigMap that projected ServiceAccount tokens need,
// EndpointSlices route a Service, and the disruption controller keeps a
// PodDisruptionBudget's status, which the Eviction API checks; the
// clusterrole-aggregation controller fills the built-in admin ClusterRole,
// which a namespace admin is bound to.
const NodeControllers = "clusterrole-aggregation-controller,deployment-controller,replicaset-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,serviceaccount-controller,endpointslice-controller,disruption-controller"

// runtimePackages are Debian's container runtime and CNI plugins, fetched
// once into a cache (DebianPackages), never installed on the system.
var runtimePackages = []string{"containerd", "runc", "containernetworking-plugins"}

// Node is one real Kubernetes node on this machine: containerd and runc from
// Debian's packages, the kubelet built from the pinned Kubernetes module, a
// CNI bridge giving pods their own addresses, and kube-scheduler (plus the
// controllers of NodeControllers) on the control plane, so that Deployments
// run as real pods.
//
// Everything lives under Dir, in cgroups under /sys/fs/cgroup/*/<Cgroup> and
// on one bridge; Stop kills every process in those cgroups (containers and
// containerd's shims with them), unmounts what is mounted under Dir, deletes
// the bridge and the cgroups. A Node left by a killed test process is torn
// down the same way by its reaper (startReaper), or else by the next TempDir
// call (reapStaleNode).
type Node struct {
	// Name is the Node object's name.
	Name string
	// IP is the node's InternalIP, this machine's own address; pods reach
	// the API server at IP and APIPort.
	IP      net.IP
	APIPort int
	// KubeletPort is the kubelet's HTTPS port on IP (anonymous, allowed
	// all: /metrics, /pods, logs and exec).
	KubeletPort int
	// Dir holds containerd's and the kubelet's state and the logs.
	Dir string
	// Cgroup is the cgroup (in every v1 hierarchy) that holds everything.
	Cgroup string
	// Images are the images imported into containerd.
	Images Images

	cp      *ControlPlane
	runtime string
	bridge  string
	subnet  int

	reaper *os.File
	// registry serves the release image to containerd (pulled by tag).
	registry *registry

	mu    sync.Mutex
	procs map[string]*Process
}

// NodeOptions configure StartNode.
type NodeOptions struct {
	// Images, when set, are imported instead of building them.
	Images *Images
}

// StartNode fetches and builds what is missing (cached after the first
// call), starts kube-controller-manager with NodeControllers and
// kube-scheduler on the control plane, then containerd and a kubelet, imports
// the images, and waits until the node is Ready and schedulable. It needs
// root. The node's not-ready taint is removed once it is Ready: without the
// node-lifecycle controller nothing else would.
func (cp *ControlPlane) StartNode(ctx context.Context, opts NodeOptions) (_ *Node, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("start a node: the kubelet and containerd need root, and this process runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	ip, err := HostIP()
	if err != nil {
		return nil, fmt.Errorf("start a node: %w", err)
	}
	runtimeRoot, err := DebianPackages(cp.log, runtimePackages...)
	if err != nil {
		return nil, fmt.Errorf("start a node: fetch the container runtime: %w", err)
	}
	dir, err := TempDir("node")
	if err != nil {
		return nil, err
	}
	n := &Node{
		Name: "node-" + strconv.Itoa(os.Getpid()), IP: ip, APIPort: cp.apiPort, Dir: dir,
		cp: cp, runtime: runtimeRoot, procs: map[string]*Process{},
	}
	n.subnet = pickSubnet(dir)
	n.bridge = fmt.Sprintf("le%d", n.subnet)
	n.Cgroup = "leader-elector-" + filepath.Base(dir)
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
		}
	}()
	// What Stop and reapStaleNode need to find the bridge and the cgroups.
	if err := os.WriteFile(filepath.Join(dir, nodeMarker), []byte(n.Cgroup+"\n"+n.bridge+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("start a node: %w", err)
	}
	// The reaper's log is outside dir, which it removes.
	if n.reaper, err = startReaper(dir, n.Cgroup, n.bridge, dir+".reaper.log"); err != nil {
		return nil, err
	}
	if err := makeCgroups(n.Cgroup); err != nil {
		return nil, fmt.Errorf("start a node: %w", err)
	}
	if err := cp.ensureControllerManager(ctx, NodeControllers); err != nil {
		return nil, err
	}
	if err := n.startScheduler(ctx); err != nil {
		return nil, err
	}
	if n.registry, err = startRegistry(); err != nil {
		return nil, fmt.Errorf("start a node: %w", err)
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	images := opts.Images
	if images == nil {
		built, err := BuildImages(ctx, filepath.Join(dir, "images"), cp.log)
		if err != nil {
			return nil, fmt.Errorf("start a node: build the images: %w", err)
		}
		images = &built
	}
	n.Images = *images
	for _, img := range []Image{images.Pause, images.App} {
		if err := n.ImportImage(ctx, img); err != nil {
			return nil, fmt.Errorf("start a node: %w", err)
		}
	}
	// The release image goes the way a user's does: pushed to a registry,
	// pulled by the node's containerd by tag, with the default pull policy.
	if n.Images.Sidecar.Ref, err = n.registry.Push(ctx, images.Sidecar); err != nil {
		return nil, fmt.Errorf("start a node: %w", err)
	}
	if err := n.startKubelet(ctx); err != nil {
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(cp.log, "testcluster: node %s ready at %s (pods on %s)\n", n.Name, ip, n.podCIDR())
	return n, nil
}

// ImportImage imports img into the node's containerd, where pods with
// imagePullPolicy Never find it.
func (n *Node) ImportImage(ctx context.Context, img Image) error {
	if err := n.ctr(ctx, "images", "import", "--no-unpack=false", img.Tar); err != nil {
		return fmt.Errorf("import %s: %w", img.Ref, err)
	}
	return nil
}

// ImageNames lists the images of the node's containerd, by reference.
func (n *Node) ImageNames(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.runtime, "usr", "bin", "ctr"), "--address", n.socket(), "--namespace", "k8s.io", "images", "ls", "-q")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ctr images ls: %w", err)
	}
	return strings.Fields(string(out)), nil
}

const nodeMarker = "node.cleanup"

// pickSubnet picks a /24 for the node's pods (10.244.X.0/24) and its bridge
// leX, X from the directory's name, moving on past bridges that exist.
func pickSubnet(dir string) int {
	h := fnv.New32a()
	h.Write([]byte(dir))
	x := int(h.Sum32()%200) + 20
	for range 200 {
		if _, err := net.InterfaceByName(fmt.Sprintf("le%d", x)); err != nil {
			return x
		}
		x = (x-20+1)%200 + 20
	}
	return x
}

func (n *Node) podCIDR() string { return fmt.Sprintf("10.244.%d.0/24", n.subnet) }

// ensureControllerManager runs kube-controller-manager with controllers:
// one started with others is started again with these (NodeControllers
// include the endpointslice and serviceaccount controllers the other users
// start).
func (cp *ControlPlane) ensureControllerManager(ctx context.Context, controllers string) error {
	cp.mu.Lock()
	_, running := cp.procs["kube-controller-manager"]
	same := cp.controllers == controllers
	cp.mu.Unlock()
	if running && same {
		return nil
	}
	if running {
		if err := cp.StopControllerManager(10 * time.Second); err != nil {
			return err
		}
	}
	return cp.StartControllerManager(ctx, controllers)
}

func (n *Node) startScheduler(ctx context.Context) error {
	kubeconfig := filepath.Join(n.cp.Dir, "admin.kubeconfig")
	if err := WriteKubeconfig(kubeconfig, n.cp.URL, n.cp.CAData, n.cp.adminToken); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	p, err := n.start("kube-scheduler", filepath.Join(n.cp.Bin, "kube-scheduler"), nil,
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--v=0")
	if err != nil {
		return err
	}
	return waitFor(ctx, 60*time.Second, p, "kube-scheduler", func() error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureLoopbackTLS()}, Timeout: time.Second}
		return healthy(c, fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
	})
}

func (n *Node) socket() string { return filepath.Join(n.Dir, "containerd.sock") }

func (n *Node) startContainerd(ctx context.Context) error {
	d := func(parts ...string) string { return filepath.Join(append([]string{n.Dir}, parts...)...) }
	for _, sub := range []string{"cni/net.d", "cni/ipam", "containerd/root", "containerd/state", "containerd/opt", "runc"} {
		if err := os.MkdirAll(d(sub), 0o755); err != nil {
			return fmt.Errorf("start containerd: %w", err)
		}
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "%[1]s",
  "plugins": [{
    "type": "bridge", "bridge": "%[1]s", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "%[2]s"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "%[3]s"}
  }]
}
`, n.bridge, n.podCIDR(), d("cni", "ipam"))
	if err := os.WriteFile(d("cni", "net.d", "10-bridge.conflist"), []byte(conflist), 0o644); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This VM refuses a negative oom_score_adj; runc would fail every sandbox.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false
`, d("containerd", "root"), d("containerd", "state"), n.socket(), n.socket()+".ttrpc",
		d("containerd", "opt"), PauseRef, d("certs.d"), filepath.Join(n.runtime, "usr", "lib", "cni"), d("cni", "net.d"),
		filepath.Join(n.runtime, "usr", "sbin", "runc"), d("runc"))
	if err := n.registry.configure(d("certs.d")); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	if err := os.WriteFile(d("containerd.toml"), []byte(config), 0o644); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	// The shim (containerd-shim-runc-v2) is found on PATH.
	env := []string{"PATH=" + filepath.Join(n.runtime, "usr", "bin") + ":" + filepath.Join(n.runtime, "usr", "sbin") + ":" + os.Getenv("PATH")}
	p, err := n.start("containerd", filepath.Join(n.runtime, "usr", "bin", "containerd"), env, "--config="+d("containerd.toml"))
	if err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, p, "containerd", func() error {
		return n.ctr(ctx, "version")
	})
}

// ctr runs Debian's ctr against this node's containerd, in the CRI's
// namespace.
func (n *Node) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(n.runtime, "usr", "bin", "ctr"),
		append([]string{"--address", n.socket(), "--namespace", "k8s.io"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	n.KubeletPort = port
	healthz, err := FreePort()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(n.Dir, "kubelet.kubeconfig")
	if err := WriteKubeconfig(kubeconfig, n.cp.URL, n.cp.CAData, n.cp.adminToken); err != nil {
		return err
	}
	logs := filepath.Join(n.Dir, "pod-logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return fmt.Errorf("start the kubelet: %w", err)
	}
	// cgroup v1 (this machine), cgroupfs (containerd 1.6 reports no
	// driver), pods under the node's own cgroup, nothing reserved, and
	// eviction thresholds that a shared test machine does not cross.
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /%s/pods
enforceNodeAllocatable: []
podLogsDir: %s
volumePluginDir: %s
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 30
resolvConf: /etc/resolv.conf
`, n.IP, port, healthz, n.socket(), n.Cgroup, logs, filepath.Join(n.Dir, "volume-plugins"))
	if err := os.WriteFile(filepath.Join(n.Dir, "kubelet.yaml"), []byte(config), 0o644); err != nil {
		return fmt.Errorf("start the kubelet: %w", err)
	}
	p, err := n.start("kubelet", filepath.Join(n.cp.Bin, "kubelet"), nil,
		"--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "kubelet-pki"),
		"--hostname-override="+n.Name, "--node-ip="+n.IP.String(),
		"--v=1")
	if err != nil {
		return err
	}
	return waitFor(ctx, 60*time.Second, p, "kubelet", func() error {
		return healthy(&http.Client{Timeout: time.Second}, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz))
	})
}

// waitReady waits until the Node is Ready, then removes the not-ready taint
// the API server gave it at registration.
func (n *Node) waitReady(ctx context.Context) error {
	n.mu.Lock()
	kubelet := n.procs["kubelet"]
	n.mu.Unlock()
	return waitFor(ctx, 90*time.Second, kubelet, "node "+n.Name, func() error {
		node, err := n.cp.Admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return fmt.Errorf("node not Ready: %s: %s", c.Reason, c.Message)
				}
				ready = true
			}
		}
		if !ready {
			return errors.New("node has no Ready condition yet")
		}
		if !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady }) {
			return nil
		}
		taints := slices.DeleteFunc(slices.Clone(node.Spec.Taints), func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"taints": taints}})
		if err != nil {
			return err
		}
		_, err = n.cp.Admin.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return err
		}
		return errors.New("removed the not-ready taint; checking again")
	})
}

// start runs a node process inside the node's runtime cgroup, so that Stop
// finds everything it forks (containerd's shims, with their containers).
func (n *Node) start(name, path string, env []string, args ...string) (*Process, error) {
	procs := cgroupPath("pids", n.Cgroup, "runtime", "cgroup.procs")
	// sh moves itself into the cgroup, then becomes path.
	script := `echo $$ > "$0" && exec "$@"`
	p, err := StartProcess(name, "/bin/sh", append([]string{"-c", script, procs, path}, args...), env,
		filepath.Join(n.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.procs[name] = p
	n.mu.Unlock()
	return p, nil
}

// Process returns the node's process by name (containerd, kubelet,
// kube-scheduler), or nil.
func (n *Node) Process(name string) *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[name]
}

// ContainerPIDs returns the PIDs of a container, by the ID in its pod's
// container status ("containerd://<id>" or the bare ID).
func (n *Node) ContainerPIDs(containerID string) ([]int, error) {
	id := containerID[strings.LastIndex(containerID, "/")+1:]
	root := cgroupPath("pids", n.Cgroup, "pods")
	var found string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a cgroup removed while we walk
		}
		if d.IsDir() && d.Name() == id {
			found = path
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil || found == "" {
		return nil, fmt.Errorf("find the cgroup of container %s under %s: not found", id, root)
	}
	return readPids(filepath.Join(found, "cgroup.procs"))
}

// Stop stops the kubelet, kills everything in the node's cgroups, stops
// containerd and kube-scheduler, unmounts what is mounted under Dir, and
// removes the bridge, the cgroups and Dir. kube-controller-manager stays with
// the control plane.
func (n *Node) Stop() error {
	var errs []error
	for _, name := range []string{"kubelet", "kube-scheduler"} {
		n.mu.Lock()
		p := n.procs[name]
		delete(n.procs, name)
		n.mu.Unlock()
		if p != nil {
			errs = append(errs, p.Stop(syscall.SIGKILL, 10*time.Second))
		}
	}
	errs = append(errs, teardownNode(n.Dir, n.Cgroup, n.bridge))
	if n.registry != nil {
		errs = append(errs, n.registry.Close())
	}
	if n.reaper != nil {
		n.reaper.Close() // the reaper finds Dir gone and exits
		n.reaper = nil
	}
	_ = os.Remove(n.Dir + ".reaper.log")
	n.mu.Lock()
	for name, p := range n.procs {
		<-p.Done()
		delete(n.procs, name)
	}
	n.mu.Unlock()
	return errors.Join(errs...)
}

// teardownNode kills every process in the node's cgroups (containerd, its
// shims and the containers), unmounts everything under dir, deletes the
// bridge and the cgroups, removes the kubelet's log links, and dir.
func teardownNode(dir, cgroup, bridge string) error {
	var errs []error
	if cgroup != "" {
		errs = append(errs, killCgroup(cgroup))
	}
	errs = append(errs, unmountUnder(dir))
	if bridge != "" {
		if _, err := net.InterfaceByName(bridge); err == nil {
			if out, err := exec.Command("ip", "link", "delete", bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w: %s", bridge, err, out))
			}
		}
	}
	if cgroup != "" {
		errs = append(errs, removeCgroups(cgroup))
	}
	removeLogLinks(dir)
	removeShimSockets(dir)
	removeCNIResults(bridge)
	removeDevicePluginSocket()
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// reapStaleNode tears down the node a killed test process left in dir, if
// there is one.
func reapStaleNode(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, nodeMarker))
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "leader-elector-") {
		return
	}
	_ = teardownNode(dir, lines[0], lines[1])
}

// cgroupHierarchies are the cgroup v1 hierarchies mounted on this machine.
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "unified" {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.Name(), "cgroup.procs")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func cgroupPath(hierarchy string, parts ...string) string {
	return filepath.Join(append([]string{"/sys/fs/cgroup", hierarchy}, parts...)...)
}

// makeCgroups makes <cgroup> and <cgroup>/runtime in every hierarchy; cpuset
// children get their parent's CPUs and memory nodes, without which no task
// may join.
func makeCgroups(cgroup string) error {
	for _, h := range cgroupHierarchies() {
		for _, sub := range []string{"", "runtime", "pods"} {
			path := cgroupPath(h, cgroup, sub)
			if err := os.MkdirAll(path, 0o755); err != nil {
				return fmt.Errorf("make cgroup %s: %w", path, err)
			}
			if h == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(filepath.Dir(path), f))
					if err != nil {
						return fmt.Errorf("read %s of %s: %w", f, filepath.Dir(path), err)
					}
					if err := os.WriteFile(filepath.Join(path, f), v, 0o644); err != nil {
						return fmt.Errorf("write %s of %s: %w", f, path, err)
					}
				}
			}
		}
	}
	return nil
}

// killCgroup SIGKILLs every process in the pids cgroup tree until it is
// empty.
func killCgroup(cgroup string) error {
	root := cgroupPath("pids", cgroup)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pids []int
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				p, _ := readPids(filepath.Join(path, "cgroup.procs"))
				pids = append(pids, p...)
			}
			return nil
		})
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in cgroup %s after 30s of SIGKILL", pids, root)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// removeCgroups removes the cgroup trees, deepest first.
func removeCgroups(cgroup string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := cgroupPath(h, cgroup)
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	var errs []error
	for range 5 {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return fmt.Errorf("read mountinfo: %w", err)
		}
		var points []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 {
				p := unescapeMount(f[4])
				if p == dir || strings.HasPrefix(p, dir+"/") {
					points = append(points, p)
				}
			}
		}
		if len(points) == 0 {
			return nil
		}
		slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
		errs = errs[:0]
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeLogLinks removes the kubelet's links in /var/log/containers that
// point into dir (its pod log directory); the kubelet removes them only for
// containers it removes itself.
func removeLogLinks(dir string) {
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		path := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(path); err == nil && strings.HasPrefix(target, dir+"/") {
			_ = os.Remove(path)
		}
	}
}

// healthy GETs url and wants 200 OK.
func healthy(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// removeShimSockets removes the sockets that containerd's shims, killed with
// the node, left in containerd's fixed socket directory: one per task, named
// by the hash of the node's containerd address, namespace and task ID (as
// containerd 1.6's shim.SocketAddress names them). Then the directories
// containerd and ctr made under /run/containerd, if they are empty.
func removeShimSockets(dir string) {
	const run = "/run/containerd"
	address := filepath.Join(dir, "containerd.sock")
	tasks := filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task")
	namespaces, _ := os.ReadDir(tasks)
	for _, ns := range namespaces {
		ids, _ := os.ReadDir(filepath.Join(tasks, ns.Name()))
		for _, id := range ids {
			sum := sha256.Sum256([]byte(filepath.Join(address, ns.Name(), id.Name())))
			_ = os.Remove(filepath.Join(run, "s", hex.EncodeToString(sum[:])))
		}
	}
	for _, sub := range []string{"s", "fifo", "runc/k8s.io", "runc", ""} {
		_ = syscall.Rmdir(filepath.Join(run, sub)) // only if empty
	}
}

// EmptyDirPath is where the kubelet keeps a pod's emptyDir volume on this
// machine: what its containers see at their mount, seen from outside.
func (n *Node) EmptyDirPath(podUID types.UID, volume string) string {
	return filepath.Join(n.Dir, "kubelet", "pods", string(podUID), "volumes", "kubernetes.io~empty-dir", volume)
}

// KubeletGet GETs path from the kubelet's HTTPS port (its certificate is its
// own, self-signed) and returns the body.
func (n *Node) KubeletGet(ctx context.Context, path string) ([]byte, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureLoopbackTLS()}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s/%s", net.JoinHostPort(n.IP.String(), strconv.Itoa(n.KubeletPort)), strings.TrimPrefix(path, "/")), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet GET %s: %s %v", path, resp.Status, err)
	}
	return b, nil
}

// removeCNIResults removes what the CNI library cached in /var/lib/cni for
// pod sandboxes of the node's network (named as its bridge) that were killed
// with the node, never torn down: "<network>-<sandbox>-eth0" and the
// loopback's "cni-loopback-<sandbox>-lo". Then the directories, if empty.
func removeCNIResults(network string) {
	const dir = "/var/lib/cni/results"
	if network == "" {
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), network+"-")
		if !ok {
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
		if sandbox, _, ok := strings.Cut(rest, "-"); ok {
			_ = os.Remove(filepath.Join(dir, "cni-loopback-"+sandbox+"-lo"))
		}
	}
	_ = syscall.Rmdir(dir)
	_ = syscall.Rmdir(filepath.Dir(dir))
}

// removeDevicePluginSocket removes the kubelet's device-plugin socket, whose
// path is fixed (/var/lib/kubelet/device-plugins/kubelet.sock, whatever the
// root directory), unless another node's kubelet listens on it; then the
// directories, if empty.
func removeDevicePluginSocket() {
	const sock = "/var/lib/kubelet/device-plugins/kubelet.sock"
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return
	}
	_ = os.Remove(sock)
	_ = syscall.Rmdir(filepath.Dir(sock))
	_ = syscall.Rmdir(filepath.Dir(filepath.Dir(sock)))
}
