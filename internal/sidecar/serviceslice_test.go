package sidecar

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
)

// TestServiceSliceFollowsLeadership: with SERVICE_NAME, the leader's
// EndpointSlice names its POD_IP, /status reports it, and stepping down
// deletes it before the Lease is released.
func TestServiceSliceFollowsLeadership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "myapp", Namespace: ns, UID: "svc-uid"}}
		c := newCluster(t, svc)
		c.PrependReactor("delete", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
			c.mu.Lock()
			c.record("delete slice")
			c.mu.Unlock()
			return false, nil, nil
		})
		cfg := testConfig(t)
		cfg.ServiceName, cfg.ServiceNamespace, cfg.PodIP, cfg.NodeName = "myapp", ns, "10.0.0.7", "node-1"
		cfg.ServicePorts = `[{"name":"http","port":8080}]`
		cfg.Ports = servicePorts(t, cfg.ServicePorts)
		r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: newIdleListener(nil), Version: "test",
			Slices: c.DiscoveryV1().EndpointSlices(ns), Services: c.CoreV1().Services(ns), Endpoints: c.CoreV1().Endpoints(ns)})
		time.Sleep(time.Second)
		synctest.Wait()

		slices := c.DiscoveryV1().EndpointSlices(ns)
		sl, err := slices.Get(context.Background(), serviceslice.SliceName("myapp"), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("no EndpointSlice while leading: %v", err)
		}
		if len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "10.0.0.7" || *sl.Endpoints[0].NodeName != "node-1" ||
			sl.Endpoints[0].TargetRef.Name != "pod-a" || sl.AddressType != discoveryv1.AddressTypeIPv4 {
			t.Errorf("EndpointSlice = %+v, want pod-a at 10.0.0.7 on node-1", sl)
		}
		if rep := r.s.report(); rep.Service == nil || !rep.Service.Names || rep.Service.Service != ns+"/myapp" {
			t.Errorf("/status service = %+v, want it to name this pod", rep.Service)
		}
		c.mu.Lock()
		c.events = nil
		c.mu.Unlock()

		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := slices.Get(context.Background(), sl.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the EndpointSlice is still there after the step-down (%v)", err)
		}
		c.mu.Lock()
		got := strings.Join(c.events, "; ")
		c.mu.Unlock()
		if want := "delete slice; release"; got != want {
			t.Errorf("step-down order: %s; want %s", got, want)
		}
	})
}

func TestServiceSliceNeedsItsAPIs(t *testing.T) {
	c := newCluster(t)
	cfg := testConfig(t)
	cfg.ServiceName, cfg.ServiceNamespace, cfg.PodIP, cfg.ServicePorts = "myapp", ns, "10.0.0.7", `[{"port":80}]`
	cfg.Ports = servicePorts(t, cfg.ServicePorts)
	_, err := New(cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet})
	if err == nil || !strings.Contains(err.Error(), "Deps.Slices") {
		t.Errorf("New without the EndpointSlice API = %v, want an error naming it", err)
	}
}

// servicePorts parses SERVICE_PORTS as Load does.
func servicePorts(t *testing.T, s string) []discoveryv1.EndpointPort {
	t.Helper()
	ports, err := config.ParseServicePorts(s)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
