package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// runPods is the real-pod demo: deploy/example.yaml, rendered by kustomize
// with only the node's changes, as three pods on the node.
func (d *demo) runPods(ctx context.Context) error {
	ns, err := d.cp.CreateNamespace(ctx, namespacePrefix)
	if err != nil {
		return err
	}
	d.ns = ns
	objs, err := testcluster.KustomizeDeploy(d.node.PodOverlay(ns))
	if err != nil {
		return err
	}
	start := time.Now()
	if err := d.cp.ApplyObjects(ctx, ns, objs); err != nil {
		return err
	}
	d.say("\nkubectl apply -k deploy/ (namespace %s, the images imported into the node, KUBERNETES_SERVICE_HOST set: no kube-proxy here)...", ns)
	if _, err := d.cp.WaitExamplePods(ctx, ns, replicas, 3*time.Minute); err != nil {
		return err
	}
	l, err := d.cp.WaitLease(ctx, ns, 30*time.Second, "held", func(l *coordinationv1.Lease) bool { return testcluster.Holder(l) != "" })
	if err != nil {
		return err
	}
	d.say("%d pods ready %s after the apply; %s leads. What each part says:", replicas, since(start), testcluster.Holder(l))
	if err := d.podTable(ctx, testcluster.Holder(l)); err != nil {
		return err
	}

	leader, err := d.pod(ctx, testcluster.Holder(l))
	if err != nil {
		return err
	}
	d.say("\nkubectl delete pod %s: the kubelet stops the app, then the sidecar, which releases the Lease...", leader.Name)
	deleted := time.Now()
	if err := d.cp.Admin.CoreV1().Pods(ns).Delete(ctx, leader.Name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	l, err = d.cp.WaitLease(ctx, ns, time.Minute, "taken by another pod", func(l *coordinationv1.Lease) bool {
		h := testcluster.Holder(l)
		return h != "" && h != leader.Name && l.Spec.AcquireTime != nil && l.Spec.AcquireTime.After(deleted)
	})
	if err != nil {
		return err
	}
	handover := l.Spec.AcquireTime.Sub(deleted)
	if _, err := d.cp.WaitExamplePods(ctx, ns, replicas, 2*time.Minute); err != nil {
		return err
	}
	d.say("%s acquired the Lease %s after the delete; the Deployment's new pod is ready:", testcluster.Holder(l), handover.Round(time.Millisecond))
	if err := d.podTable(ctx, testcluster.Holder(l)); err != nil {
		return err
	}

	leader, err = d.pod(ctx, testcluster.Holder(l))
	if err != nil {
		return err
	}
	sc := testcluster.ContainerStatus(leader, testcluster.SidecarContainer)
	d.say("\nSIGKILL of %s's sidecar container (as an OOM kill would end it); the kubelet restarts it...", leader.Name)
	killed, err := d.node.KillContainer(ctx, sc.ContainerID)
	if err != nil {
		return err
	}
	l, err = d.cp.WaitLease(ctx, ns, time.Minute, "renewed", func(l *coordinationv1.Lease) bool {
		return testcluster.Holder(l) != "" && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(killed)
	})
	if err != nil {
		return err
	}
	if _, err := d.cp.WaitRestarted(ctx, ns, leader.Name, testcluster.SidecarContainer, sc, time.Minute); err != nil {
		return err
	}
	started, err := d.cp.SidecarStarted(ctx, ns, leader.Name, killed, 30*time.Second)
	if err != nil {
		return err
	}
	d.say("The kubelet restarted it %s after the kill; it resumed its own term (POD_UID) %s after its start: %s leads, no failover.",
		started.Sub(killed).Round(time.Millisecond), l.Spec.RenewTime.Sub(started).Round(time.Millisecond), testcluster.Holder(l))
	if err := d.podTable(ctx, testcluster.Holder(l)); err != nil {
		return err
	}
	d.say("\nMeasured in real pods: delete of the leader's pod to the next leader %s; sidecar SIGKILL to its resumed term %s.",
		handover.Round(time.Millisecond), l.Spec.RenewTime.Sub(killed).Round(time.Millisecond))
	return nil
}

func (d *demo) pod(ctx context.Context, name string) (*corev1.Pod, error) {
	return d.cp.Admin.CoreV1().Pods(d.ns).Get(ctx, name, metav1.GetOptions{})
}

// podTable prints, per pod, what the kubelet, the app, the label, the Lease
// and the Service's EndpointSlice say, once the labels and the Service have
// caught up with leader: each is published after the Lease, by the sidecars
// and the endpointslice controller.
func (d *demo) podTable(ctx context.Context, leader string) error {
	if err := d.cp.WaitRoles(ctx, d.ns, testcluster.ExampleApp, leader, 30*time.Second); err != nil {
		return err
	}
	if _, _, err := d.cp.WaitRouted(ctx, d.ns, testcluster.ExampleService, leader, time.Now(), 30*time.Second); err != nil {
		return err
	}
	l, err := d.cp.ExampleLeaseNow(ctx, d.ns)
	if err != nil {
		return err
	}
	eps, err := d.cp.ServiceEndpoints(ctx, d.ns, testcluster.ExampleService)
	if err != nil {
		return err
	}
	pods, err := d.cp.Admin.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + testcluster.ExampleApp})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POD\tIP\tSIDECAR\tAPP SEES /tmp/leader_status\tROLE LABEL\tLEASE HOLDER\tSERVICE ENDPOINT")
	for _, p := range pods.Items {
		sc := testcluster.ContainerStatus(&p, testcluster.SidecarContainer)
		state := "-"
		if sc != nil {
			state = fmt.Sprintf("ready=%v restarts=%d", sc.Ready, sc.RestartCount)
		}
		sees := "no"
		if ok, content, err := testcluster.AppSeesStatusFile(ctx, &p); err != nil {
			sees = "? " + err.Error()
		} else if ok {
			sees = "yes: " + strings.TrimSpace(content)
		}
		role := p.Labels["role"]
		if role == "" {
			role = "-"
		}
		inService := false
		for _, e := range eps {
			inService = inService || e == p.Name
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Status.PodIP, state, sees, role,
			mark(testcluster.Holder(l) == p.Name), mark(inService))
	}
	return tw.Flush()
}
