// Command demo shows leader-elector on a real local control plane: it starts
// etcd and kube-apiserver on loopback and, where it can, a real node
// (containerd and a kubelet): then it runs deploy/example.yaml as three real
// pods, shows who leads and what each app sees, deletes the leader's pod and
// kills a sidecar, measured (pods.go). Where the node cannot start (no root,
// no apt) or with DEMO_PROCESSES=1, it runs three replicas of the sidecar as
// processes standing for pods under the RBAC of deploy/, shows who leads and
// each replica's /metrics, stops the leader and shows the handover, measured,
// with the metrics again and the Events on the Lease. Either way it says
// which ran, and stops everything. Run it with `make demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

const (
	namespacePrefix = "demo"
	app             = "demo"
	lease           = "myapp-lock" // the Lease deploy/rbac/rbac.yaml grants
	service         = "demo-leader"
	replicas        = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	out      io.Writer
	cp       *testcluster.ControlPlane
	ns       string
	dir      string
	uids     map[string]string // pod name -> uid, for the events' related pod
	sidecars []*testcluster.Sidecar
	node     *testcluster.Node // the real-pod demo's, else nil
}

func run(ctx context.Context, out io.Writer) (err error) {
	d := &demo{out: out}
	d.say("leader-elector demo: three pods elect a leader through a Lease on a real kube-apiserver.")
	d.say("Building the control plane from its Go modules if needed (the first time takes several minutes)...")
	start := time.Now()
	cp, err := testcluster.Start(ctx, testcluster.Options{Log: os.Stderr})
	if err != nil {
		return err
	}
	d.cp = cp
	defer func() {
		d.say("\nStopping the sidecars and the control plane...")
		err = errors.Join(err, d.stop())
		if err == nil {
			d.say("Done: every process the demo started has exited and its files are removed.")
		}
	}()
	v, err := cp.Admin.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	d.say("Control plane: kube-apiserver %s and etcd at %s, ready in %s.", v.GitVersion, cp.URL, since(start))
	if os.Getenv("DEMO_PROCESSES") == "" {
		d.say("Starting a real node: containerd and runc from Debian's packages, a kubelet built from the same module (the first time takes minutes)...")
		start = time.Now()
		node, err := cp.StartNode(ctx, testcluster.NodeOptions{})
		if err == nil {
			d.node = node
			d.say("Node %s ready in %s: the demo runs deploy/example.yaml as real pods.", node.Name, since(start))
			return d.runPods(ctx)
		}
		d.say("\nThe real node cannot start here, so the demo runs the sidecars as plain processes instead:\n  %v", err)
	}
	d.say("Running the sidecars as processes standing in for pods (the process demo).")
	if err := cp.StartControllerManager(ctx, "endpointslice,serviceaccount"); err != nil {
		return err
	}
	d.say("kube-controller-manager runs the endpointslice controller, which routes the Service %q (selector app=%s,role=leader).", service, app)

	if err := d.setUp(ctx); err != nil {
		return err
	}
	bin, kubeconfig, err := d.prepareSidecars(ctx)
	if err != nil {
		return err
	}
	start = time.Now()
	if err := d.startSidecars(bin, kubeconfig); err != nil {
		return err
	}
	leader, err := testcluster.WaitForLeader(ctx, d.sidecars, "", 30*time.Second)
	if err != nil {
		return err
	}
	elected := since(start)
	routed, err := d.waitRouted(ctx, leader.Opts.Pod)
	if err != nil {
		return err
	}
	d.say("\n%s won the election %s after the sidecars started; the Service routed to it %s later:", leader.Opts.Pod, elected, routed)
	if err := d.table(ctx); err != nil {
		return err
	}
	d.say("\nGET /metrics on each replica's health port:")
	if err := d.metrics(ctx, leader.Opts.Pod, false); err != nil {
		return err
	}

	d.say("\nSending SIGTERM to %s, as Kubernetes does when the pod is deleted...", leader.Opts.Pod)
	start = time.Now()
	if err := leader.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	next, err := testcluster.WaitForLeader(ctx, d.sidecars, leader.Opts.Pod, 30*time.Second)
	if err != nil {
		return err
	}
	handover := time.Since(start)
	routedNext, err := d.waitRouted(ctx, next.Opts.Pod)
	if err != nil {
		return err
	}
	routing := time.Since(start)
	<-leader.Done()
	d.say("%s released the Lease and exited; %s took over.", leader.Opts.Pod, next.Opts.Pod)
	if err := d.table(ctx); err != nil {
		return err
	}
	d.say("\nGET /metrics again (handover_seconds: from seeing the release to publishing the status file):")
	if err := d.metrics(ctx, next.Opts.Pod, true); err != nil {
		return err
	}
	if err := d.events(ctx, leader.Opts.Pod, next.Opts.Pod); err != nil {
		return err
	}
	if os.Getenv("DEMO_LOGS") != "" {
		d.say("\nSidecar logs:\n%s", d.logs())
	}
	d.say("\nMeasured handover: %s from SIGTERM until %s's status file existed; the Service routed to it %s after SIGTERM (%s after its status file).",
		handover.Round(time.Millisecond), next.Opts.Pod, routing.Round(time.Millisecond), routedNext)
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// setUp makes the namespace, the RBAC of deploy/, a Node and the pods.
func (d *demo) setUp(ctx context.Context) error {
	ns, err := d.cp.CreateNamespace(ctx, namespacePrefix)
	if err != nil {
		return err
	}
	d.ns = ns
	rbac := filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml")
	if err := d.cp.ApplyManifests(ctx, ns, rbac); err != nil {
		return err
	}
	if err := d.cp.CreateNode(ctx, "node-1"); err != nil {
		return err
	}
	if err := d.cp.CreateLeaderService(ctx, ns, service, app); err != nil {
		return err
	}
	d.uids = map[string]string{}
	for i := range replicas {
		name := fmt.Sprintf("replica-%d", i)
		p, err := d.cp.CreatePod(ctx, ns, name, testcluster.PodOptions{Labels: map[string]string{"app": app}, NodeName: "node-1"})
		if err != nil {
			return err
		}
		d.uids[name] = string(p.UID)
		if err := d.cp.MarkRunning(ctx, ns, name, fmt.Sprintf("10.244.0.%d", i+10)); err != nil {
			return err
		}
	}
	d.say("Namespace %s: ServiceAccount, Role and RoleBinding from deploy/rbac/rbac.yaml; %d pods (app=%s) on a stand-in Node.", ns, replicas, app)
	return nil
}

// prepareSidecars builds the binary and mints the ServiceAccount's token.
func (d *demo) prepareSidecars(ctx context.Context) (bin, kubeconfig string, err error) {
	d.dir, err = testcluster.TempDir("demo")
	if err != nil {
		return "", "", err
	}
	d.say("Building leader-elector...")
	if bin, err = testcluster.BuildSidecar(d.dir); err != nil {
		return "", "", err
	}
	kubeconfig, err = d.cp.ServiceAccountKubeconfig(ctx, d.ns, testcluster.ServiceAccount, d.dir)
	return bin, kubeconfig, err
}

// startSidecars runs one sidecar per pod with the ServiceAccount's token.
func (d *demo) startSidecars(bin, kubeconfig string) error {
	dir := d.dir
	for i := range replicas {
		pod := fmt.Sprintf("replica-%d", i)
		s, err := testcluster.StartSidecar(testcluster.SidecarOptions{
			Binary: bin, Namespace: d.ns, Pod: pod, Lease: lease, Kubeconfig: kubeconfig,
			Env: []string{"LABEL_POD_ROLE=true", "POD_UID=" + d.uids[pod]}, Dir: filepath.Join(dir, pod),
		})
		if err != nil {
			return err
		}
		d.sidecars = append(d.sidecars, s)
	}
	d.say("Started %d sidecars as the ServiceAccount %q (LABEL_POD_ROLE=true, default timings 15s/10s/2s).", replicas, testcluster.ServiceAccount)
	return nil
}

// waitRouted waits until the Service routes to pod alone, and says how long
// that took.
func (d *demo) waitRouted(ctx context.Context, pod string) (time.Duration, error) {
	took, _, err := d.cp.WaitRouted(ctx, d.ns, service, pod, time.Now(), 30*time.Second)
	return took.Round(time.Millisecond), err
}

// table prints what each source of truth says, once the pods' role labels,
// which each sidecar patches after its status file, have caught up with the
// Lease.
func (d *demo) table(ctx context.Context) error {
	l, err := d.cp.Admin.CoordinationV1().Leases(d.ns).Get(ctx, lease, metav1.GetOptions{})
	if err != nil {
		return err
	}
	holder := testcluster.Holder(l)
	if err := d.cp.WaitRoles(ctx, d.ns, app, holder, 30*time.Second); err != nil {
		return err
	}
	transitions := int32(0)
	if l.Spec.LeaseTransitions != nil {
		transitions = *l.Spec.LeaseTransitions
	}
	eps, err := d.cp.ServiceEndpoints(ctx, d.ns, service)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POD\tSIDECAR\tSTATUS FILE\tROLE LABEL\tLEASE HOLDER\tSERVICE ENDPOINT")
	for _, s := range d.sidecars {
		state := "running"
		if s.Exited() {
			state = "exited"
		}
		file := "-"
		if b, err := os.ReadFile(s.StatusFile); err == nil {
			file = strings.TrimSpace(string(b))
		}
		pod, err := d.cp.Admin.CoreV1().Pods(d.ns).Get(ctx, s.Opts.Pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		role := pod.Labels["role"]
		if role == "" {
			role = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Opts.Pod, state, file, role, mark(holder == s.Opts.Pod), mark(slices.Contains(eps, s.Opts.Pod)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d.say("  Lease %s/%s: holder %q, leaseTransitions %d.", d.ns, lease, holder, transitions)
	return nil
}

func mark(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func (d *demo) logs() string {
	var b strings.Builder
	for _, s := range d.sidecars {
		fmt.Fprintf(&b, "--- %s\n%s\n", s.Opts.Pod, s.LogTail(40))
	}
	return b.String()
}

// stop terminates the sidecars gracefully, then the control plane.
func (d *demo) stop() error {
	var errs []error
	for _, s := range d.sidecars {
		if err := s.Terminate(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.dir != "" {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	if d.node != nil {
		if d.ns != "" {
			errs = append(errs, d.cp.DeleteExample(context.Background(), d.ns, 90*time.Second))
		}
		errs = append(errs, d.node.Stop())
	}
	if d.cp != nil {
		errs = append(errs, d.cp.Stop())
	}
	return errors.Join(errs...)
}
