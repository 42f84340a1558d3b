package serviceslice

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/testutil"
)

const (
	ns      = "apps"
	service = "myapp"
)

var slicesGVR = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")

// cluster is a fake clientset whose EndpointSlices behave as the API
// server's do where it matters here: every write gets a new
// resourceVersion, an update with an old one and a delete whose
// preconditions do not hold fail with 409 Conflict. client-go's fake tracker
// checks neither.
type cluster struct {
	cs  *fake.Clientset
	rv  atomic.Int64
	log *testutil.SyncBuffer
	// beforeDelete, if set, runs inside a delete before its preconditions
	// are checked: another writer getting in between a read and a delete.
	beforeDelete func()
}

func newCluster(t *testing.T, objs ...runtime.Object) *cluster {
	t.Helper()
	c := &cluster{cs: fake.NewClientset(objs...), log: &testutil.SyncBuffer{}}
	c.rv.Store(100)
	tracker := c.cs.Tracker()
	c.cs.PrependReactor("create", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice).DeepCopy()
		if s.UID == "" {
			s.UID = types.UID("uid-" + strconv.FormatInt(c.rv.Add(1), 10))
		}
		s.ResourceVersion = strconv.FormatInt(c.rv.Add(1), 10)
		if err := tracker.Create(slicesGVR, s, s.Namespace); err != nil {
			return true, nil, err
		}
		return true, s, nil
	})
	c.cs.PrependReactor("update", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*discoveryv1.EndpointSlice).DeepCopy()
		cur, err := c.stored(s.Name)
		if err != nil {
			return true, nil, err
		}
		if s.ResourceVersion != cur.ResourceVersion {
			return true, nil, apierrors.NewConflict(slicesGVR.GroupResource(), s.Name, errors.New("the object has been modified"))
		}
		s.UID = cur.UID
		s.ResourceVersion = strconv.FormatInt(c.rv.Add(1), 10)
		return true, s, tracker.Update(slicesGVR, s, s.Namespace)
	})
	c.cs.PrependReactor("delete", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		if c.beforeDelete != nil {
			c.beforeDelete()
		}
		cur, err := c.stored(d.GetName())
		if err != nil {
			return true, nil, err
		}
		if p := d.GetDeleteOptions().Preconditions; p != nil {
			if (p.UID != nil && *p.UID != cur.UID) || (p.ResourceVersion != nil && *p.ResourceVersion != cur.ResourceVersion) {
				return true, nil, apierrors.NewConflict(slicesGVR.GroupResource(), d.GetName(), errors.New("the precondition does not hold"))
			}
		}
		return true, nil, tracker.Delete(slicesGVR, ns, d.GetName())
	})
	return c
}

// stored reads the tracker directly, as reactors must: the fake holds its
// lock while they run.
func (c *cluster) stored(name string) (*discoveryv1.EndpointSlice, error) {
	o, err := c.cs.Tracker().Get(slicesGVR, ns, name)
	if err != nil {
		return nil, err
	}
	return o.(*discoveryv1.EndpointSlice), nil
}

// put stores s as another writer would, with a new resourceVersion.
func (c *cluster) put(s *discoveryv1.EndpointSlice) error {
	s.ResourceVersion = strconv.FormatInt(c.rv.Add(1), 10)
	return c.cs.Tracker().Update(slicesGVR, s, ns)
}

func (c *cluster) get(name string) (*discoveryv1.EndpointSlice, error) {
	return c.cs.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// slice returns the writer's slice, nil if there is none.
func (c *cluster) slice(t *testing.T) *discoveryv1.EndpointSlice {
	t.Helper()
	s, err := c.get(SliceName(service))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writes counts the actions with verb on endpointslices.
func (c *cluster) writes(verb string) int {
	n := 0
	for _, a := range c.cs.Actions() {
		if a.GetVerb() == verb && a.GetResource() == slicesGVR {
			n++
		}
	}
	return n
}

// pod is one replica's writer.
type pod struct {
	w       *Writer
	leading atomic.Bool
}

// writer returns a writer for pod name with IP ip on c.
func (c *cluster) writer(t *testing.T, name, ip string, slices Slices) *pod {
	t.Helper()
	if slices == nil {
		slices = c.cs.DiscoveryV1().EndpointSlices(ns)
	}
	p := &pod{}
	p.leading.Store(true)
	w, err := New(Config{
		Slices: slices, Services: c.cs.CoreV1().Services(ns), Endpoints: c.cs.CoreV1().Endpoints(ns),
		Namespace: ns, Service: service,
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}},
		PodIP: ip, Pod: name, PodNamespace: ns, NodeName: "node-1", Identity: name,
		Leading: p.leading.Load,
		Log:     slog.New(slog.NewTextHandler(c.log, nil)).With("pod", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.w = w
	return p
}

// run runs p's writer until the test's bubble ends it.
func (p *pod) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

func (p *pod) lead(t *testing.T) {
	t.Helper()
	if err := p.w.Lead(t.Context(), election.State{}); err != nil {
		t.Fatalf("Lead() = %v", err)
	}
}

func (p *pod) follow(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second) // RETRY_PERIOD
	defer cancel()
	return p.w.Follow(ctx, election.State{})
}

func selectorless() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: ns, UID: "svc-uid"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

// names returns the addresses of s's endpoints.
func names(s *discoveryv1.EndpointSlice) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses...)
	}
	return out
}

func TestLeadCreatesTheSlice(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"10.0.0.1", string(discoveryv1.AddressTypeIPv4)},
		{"fd00::1", string(discoveryv1.AddressTypeIPv6)},
	} {
		t.Run(tc.want, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, selectorless())
				a := c.writer(t, "pod-a", tc.ip, nil)
				a.run(t)
				a.lead(t)
				synctest.Wait()
				s := c.slice(t)
				if s == nil {
					t.Fatalf("no EndpointSlice after Lead; log:\n%s", c.log)
				}
				if string(s.AddressType) != tc.want {
					t.Errorf("addressType = %s, want %s", s.AddressType, tc.want)
				}
				if s.Labels[discoveryv1.LabelServiceName] != service || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
					t.Errorf("labels = %v, want the service name and managed-by %s", s.Labels, ManagedBy)
				}
				if s.Annotations[HolderAnnotation] != "pod-a" {
					t.Errorf("annotations = %v, want the holder", s.Annotations)
				}
				if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" || s.OwnerReferences[0].Kind != "Service" {
					t.Errorf("ownerReferences = %v, want the Service", s.OwnerReferences)
				}
				if len(s.Endpoints) != 1 {
					t.Fatalf("endpoints = %v, want one", s.Endpoints)
				}
				ep := s.Endpoints[0]
				if len(ep.Addresses) != 1 || ep.Addresses[0] != tc.ip || ep.Conditions.Ready == nil || !*ep.Conditions.Ready ||
					ep.NodeName == nil || *ep.NodeName != "node-1" || ep.TargetRef == nil || ep.TargetRef.Name != "pod-a" || ep.TargetRef.Kind != "Pod" {
					t.Errorf("endpoint = %+v, want pod-a at %s, ready, on node-1", ep, tc.ip)
				}
				if len(s.Ports) != 1 || *s.Ports[0].Name != "http" || *s.Ports[0].Port != 8080 || *s.Ports[0].Protocol != corev1.ProtocolTCP {
					t.Errorf("ports = %v, want http 8080/TCP", s.Ports)
				}
				if st := a.w.Status(); !st.Names || st.LastError != "" || st.Slice != SliceName(service) {
					t.Errorf("Status() = %+v, want it to name this pod, no error", st)
				}
			})
		})
	}
}

// TestLeadReturnsAtOnce: Lead never waits for the API server, and Follow
// cancels the write in flight and waits for it before it removes anything.
func TestLeadReturnsAtOnceAndFollowCancelsTheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		stuck := &stuckCreate{Slices: c.cs.DiscoveryV1().EndpointSlices(ns), entered: make(chan struct{})}
		a := c.writer(t, "pod-a", "10.0.0.1", stuck)
		a.run(t)
		a.lead(t) // returns although the create hangs
		<-stuck.entered
		if err := a.follow(t); err != nil {
			t.Errorf("Follow() = %v", err)
		}
		if !stuck.returned.Load() {
			t.Error("Follow returned before the leader's write did")
		}
		if s := c.slice(t); s != nil {
			t.Errorf("a slice exists after Follow: %v", names(s))
		}
	})
}

// stuckCreate is a Create that hangs until its context ends.
type stuckCreate struct {
	Slices
	entered  chan struct{}
	returned atomic.Bool
}

func (s *stuckCreate) Create(ctx context.Context, _ *discoveryv1.EndpointSlice, _ metav1.CreateOptions) (*discoveryv1.EndpointSlice, error) {
	close(s.entered)
	<-ctx.Done()
	s.returned.Store(true)
	return nil, ctx.Err()
}

func TestNewLeaderReplacesThePreviousLeadersSlice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		first := c.slice(t)
		// pod-a dies without stepping down (SIGKILL); pod-b wins.
		a.leading.Store(false)
		b := c.writer(t, "pod-b", "10.0.0.2", nil)
		b.run(t)
		b.lead(t)
		synctest.Wait()
		s := c.slice(t)
		if got := names(s); len(got) != 1 || got[0] != "10.0.0.2" {
			t.Fatalf("the slice names %v, want pod-b alone", got)
		}
		if s.UID != first.UID {
			t.Errorf("the slice was replaced by a new object (uid %s, was %s); want the same one updated", s.UID, first.UID)
		}
		// pod-b's create fails (AlreadyExists), then it updates.
		if c.writes("delete") != 0 || c.writes("create") != 2 || c.writes("update") != 1 {
			t.Errorf("writes: %d create, %d update, %d delete; want two creates (one refused) and one update", c.writes("create"), c.writes("update"), c.writes("delete"))
		}
		if !strings.Contains(c.log.String(), "previous=pod-a") {
			t.Errorf("the log does not name the previous holder:\n%s", c.log)
		}
		// pod-b's sidecar restarts and wins again: the slice names it
		// already, so there is nothing to write.
		b.leading.Store(false)
		c.cs.ClearActions()
		b2 := c.writer(t, "pod-b", "10.0.0.2", nil)
		b2.run(t)
		b2.lead(t)
		synctest.Wait()
		if c.writes("update") != 0 || c.slice(t).ResourceVersion != s.ResourceVersion {
			t.Errorf("a leader whose slice names it already wrote it again")
		}
	})
}

func TestFollowDeletesOnlyItsOwnEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		read := c.slice(t)
		c.cs.ClearActions()
		if err := a.follow(t); err != nil {
			t.Fatalf("Follow() = %v", err)
		}
		if n := len(c.cs.Actions()); n != 1 {
			t.Errorf("the step-down sent %d requests, want one delete of the slice as it was written: %v", n, c.cs.Actions())
		}
		if s := c.slice(t); s != nil {
			t.Fatalf("the slice still names %v after Follow", names(s))
		}
		var del k8stesting.DeleteAction
		for _, act := range c.cs.Actions() {
			if d, ok := act.(k8stesting.DeleteAction); ok {
				del = d
			}
		}
		p := del.GetDeleteOptions().Preconditions
		if p == nil || p.UID == nil || *p.UID != read.UID || p.ResourceVersion == nil || *p.ResourceVersion != read.ResourceVersion {
			t.Errorf("delete preconditions = %+v, want the uid and resourceVersion read (%s, %s)", p, read.UID, read.ResourceVersion)
		}
		if a.w.Status().Names {
			t.Error("Status().Names after Follow")
		}
		// No slice at all: nothing to do.
		if err := a.follow(t); err != nil {
			t.Errorf("Follow() without a slice = %v", err)
		}
	})
}

func TestFollowLeavesTheNextLeadersSliceAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		// pod-a lost the Lease (frozen past its renew deadline, say) and
		// pod-b has written its endpoint before pod-a steps down.
		a.leading.Store(false)
		b := c.writer(t, "pod-b", "10.0.0.2", nil)
		b.run(t)
		b.lead(t)
		synctest.Wait()
		before := c.slice(t)
		if err := a.follow(t); err != nil {
			t.Fatalf("Follow() = %v", err)
		}
		// pod-a's delete of the slice as it wrote it fails its precondition;
		// read again, the slice names pod-b and stays.
		after := c.slice(t)
		if got := names(after); len(got) != 1 || got[0] != "10.0.0.2" || after.ResourceVersion != before.ResourceVersion {
			t.Errorf("after pod-a's Follow the slice names %v (resourceVersion %s, was %s), want pod-b's untouched", got, after.ResourceVersion, before.ResourceVersion)
		}
	})
}

// TestFollowLosesTheRaceSafely: the next leader writes right before the
// step-down's delete arrives; the precondition fails the delete, and the
// step-down, reading the slice, leaves the next leader's endpoint alone.
func TestFollowLosesTheRaceSafely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		a.leading.Store(false)
		var once sync.Once
		c.beforeDelete = func() {
			once.Do(func() {
				s, err := c.stored(SliceName(service))
				if err != nil {
					t.Error(err)
					return
				}
				s = s.DeepCopy()
				s.Endpoints[0].Addresses = []string{"10.0.0.2"}
				s.Endpoints[0].TargetRef.Name = "pod-b"
				s.Annotations[HolderAnnotation] = "pod-b"
				if err := c.put(s); err != nil {
					t.Error(err)
				}
			})
		}
		if err := a.follow(t); err != nil {
			t.Fatalf("Follow() = %v", err)
		}
		if got := names(c.slice(t)); len(got) != 1 || got[0] != "10.0.0.2" {
			t.Errorf("the slice names %v, want the next leader's 10.0.0.2", got)
		}
		if n := c.writes("delete"); n != 1 {
			t.Errorf("%d deletes sent, want the one that failed its precondition", n)
		}
	})
}

func TestNoWriteWithoutLeadership(t *testing.T) {
	t.Run("not leading when the term starts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, selectorless())
			a := c.writer(t, "pod-a", "10.0.0.1", nil)
			a.leading.Store(false)
			a.run(t)
			a.lead(t)
			synctest.Wait()
			if n := c.writes("create") + c.writes("update"); n != 0 {
				t.Errorf("%d writes without leadership", n)
			}
		})
	})
	t.Run("leadership ends after the read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, selectorless())
			a := c.writer(t, "pod-a", "10.0.0.1", nil)
			var armed atomic.Bool
			c.cs.PrependReactor("get", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
				if armed.Load() {
					a.leading.Store(false) // the renew deadline passes while the read is in flight
				}
				return false, nil, nil
			})
			a.run(t)
			synctest.Wait() // the check at start has read the Service
			armed.Store(true)
			a.lead(t)
			synctest.Wait()
			if n := c.writes("create") + c.writes("update"); n != 0 {
				t.Errorf("%d writes after leadership ended", n)
			}
		})
	})
}

func TestLeadRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		var fails atomic.Int32
		c.cs.PrependReactor("create", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
			if fails.Add(1) <= 4 {
				return true, nil, apierrors.NewInternalError(errors.New("etcd is slow"))
			}
			return false, nil, nil
		})
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		start := time.Now()
		a.lead(t)
		synctest.Wait()
		if st := a.w.Status(); !strings.Contains(st.LastError, "etcd is slow") {
			t.Errorf("Status().LastError = %q, want the create's error", st.LastError)
		}
		for c.slice(t) == nil && time.Since(start) < time.Minute {
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		if c.slice(t) == nil {
			t.Fatalf("no slice after a minute of retries; log:\n%s", c.log)
		}
		// 200ms, 400ms, 800ms, 1.6s, each with up to 20% jitter.
		if took < 3*time.Second || took > 4*time.Second {
			t.Errorf("created after %s of back-off, want 3-3.6s", took)
		}
		if st := a.w.Status(); st.LastError != "" {
			t.Errorf("Status().LastError = %q after success", st.LastError)
		}
		if n := strings.Count(c.log.String(), "level=ERROR"); n != 1 {
			t.Errorf("the error was logged %d times, want once:\n%s", n, c.log)
		}
	})
}

func TestRefusesAServiceWithASelector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := selectorless()
		svc.Spec.Selector = map[string]string{"app": "myapp"}
		c := newCluster(t, svc)
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		if n := c.writes("create") + c.writes("update"); n != 0 {
			t.Errorf("%d writes for a Service with a selector", n)
		}
		if st := a.w.Status(); !strings.Contains(st.LastError, "has a selector (app=myapp)") {
			t.Errorf("Status().LastError = %q, want the refusal", st.LastError)
		}
		if !strings.Contains(c.log.String(), "level=ERROR msg=\"the Service cannot be routed by this sidecar\"") {
			t.Errorf("the start check does not log the selector:\n%s", c.log)
		}
		// The selector is removed: the next retry writes the slice.
		svc.Spec.Selector = nil
		if _, err := c.cs.CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		if got := names(c.slice(t)); len(got) != 1 {
			t.Errorf("after the selector went, the slice names %v", got)
		}
	})
}

func TestWaitsForTheService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		if !strings.Contains(a.w.Status().LastError, "does not exist") || !strings.Contains(c.log.String(), "the Service does not exist (yet)") {
			t.Errorf("a missing Service is not reported: %q\n%s", a.w.Status().LastError, c.log)
		}
		if _, err := c.cs.CoreV1().Services(ns).Create(context.Background(), selectorless(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		if got := names(c.slice(t)); len(got) != 1 {
			t.Errorf("after the Service was created, the slice names %v", got)
		}
	})
}

func TestRefusesASliceOfAnotherManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		foreign := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: SliceName(service), Namespace: ns,
				Labels: map[string]string{discoveryv1.LabelManagedBy: "someone-else"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.9"}}},
		}
		c := newCluster(t, selectorless(), foreign)
		a := c.writer(t, "pod-a", "10.0.0.1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		if n := c.writes("update") + c.writes("delete"); n != 0 {
			t.Errorf("%d writes to another manager's slice", n)
		}
		if !strings.Contains(a.w.Status().LastError, `managed by "someone-else"`) {
			t.Errorf("Status().LastError = %q", a.w.Status().LastError)
		}
		if err := a.follow(t); err != nil || c.writes("delete") != 0 {
			t.Errorf("Follow() = %v, %d deletes; want another manager's slice left alone", err, c.writes("delete"))
		}
	})
}

// TestChangesAddressType: addressType is immutable, so a slice of the other
// IP family is deleted (conditionally) and created again.
func TestChangesAddressType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		a := c.writer(t, "pod-a", "fd00::1", nil)
		a.run(t)
		a.lead(t)
		synctest.Wait()
		a.leading.Store(false)
		b := c.writer(t, "pod-b", "10.0.0.2", nil)
		b.run(t)
		b.lead(t)
		synctest.Wait()
		s := c.slice(t)
		if s == nil || s.AddressType != discoveryv1.AddressTypeIPv4 || names(s)[0] != "10.0.0.2" {
			t.Fatalf("slice = %+v, want IPv4 naming pod-b", s)
		}
	})
}

func TestWarnsOfALeftoverEndpointsObject(t *testing.T) {
	leftover := func(labels map[string]string) *corev1.Endpoints {
		return &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: ns, Labels: labels},
			Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.99"}}}},
		}
	}
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		warn bool
	}{
		{"leftover", []runtime.Object{selectorless(), leftover(nil)}, true},
		{"none", []runtime.Object{selectorless()}, false},
		{"skip-mirror", []runtime.Object{selectorless(), leftover(map[string]string{skipMirrorLabel: "true"})}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, tc.objs...)
				a := c.writer(t, "pod-a", "10.0.0.1", nil)
				a.run(t)
				synctest.Wait()
				log := c.log.String()
				warned := strings.Contains(log, "level=WARN") && strings.Contains(log, "kubectl delete endpoints -n apps myapp") &&
					strings.Contains(log, "addresses=[10.0.0.99]")
				if warned != tc.warn {
					t.Errorf("warned = %v, want %v:\n%s", warned, tc.warn, log)
				}
				gets := 0
				for _, act := range c.cs.Actions() {
					if act.GetResource().Resource == "endpoints" {
						gets++
					}
				}
				if gets != 1 {
					t.Errorf("%d reads of Endpoints, want one at start", gets)
				}
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	c := newCluster(t)
	good := Config{Slices: c.cs.DiscoveryV1().EndpointSlices(ns), Services: c.cs.CoreV1().Services(ns), Namespace: ns, Service: service,
		Ports: []discoveryv1.EndpointPort{{Port: new(int32(80))}}, PodIP: "10.0.0.1"}
	if _, err := New(good); err != nil {
		t.Fatalf("New() = %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no slices":   func(c *Config) { c.Slices = nil },
		"no service":  func(c *Config) { c.Service = "" },
		"no ports":    func(c *Config) { c.Ports = nil },
		"bad pod IP":  func(c *Config) { c.PodIP = "pod" },
		"no services": func(c *Config) { c.Services = nil },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New() = nil error", name)
		}
	}
	if got := SliceName("a"); got != "a-leader-elector" {
		t.Errorf("SliceName = %q", got)
	}
}

// TestFollowLeavesALaterTermsSliceWithTheSameAddressAlone: two hostNetwork
// replicas on one node without POD_NAME share the address and the identity
// (the node's hostname); a leader that steps down after the next term began
// leaves the slice of that term alone, told apart by its term.
func TestFollowLeavesALaterTermsSliceWithTheSameAddressAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, selectorless())
		hostNetwork := func(p *pod) *pod { p.w.cfg.Pod, p.w.cfg.Identity = "", "node-1"; return p }
		a := hostNetwork(c.writer(t, "pod-a", "10.0.0.1", nil))
		a.run(t)
		if err := a.w.Lead(t.Context(), election.State{Transitions: 3}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		a.leading.Store(false) // frozen past its renew deadline, say
		b := hostNetwork(c.writer(t, "pod-b", "10.0.0.1", nil))
		b.run(t)
		if err := b.w.Lead(t.Context(), election.State{Transitions: 4}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		before := c.slice(t)
		if got := before.Annotations[TermAnnotation]; got != "4" {
			t.Fatalf("the next leader's slice has term %q, want 4", got)
		}
		if err := a.follow(t); err != nil {
			t.Fatalf("Follow() = %v", err)
		}
		after, err := c.get(SliceName(service))
		if err != nil {
			t.Fatalf("after the old leader's Follow the next leader's slice is gone: %v", err)
		}
		if after.ResourceVersion != before.ResourceVersion {
			t.Errorf("after the old leader's Follow the slice changed (resourceVersion %s, was %s)", after.ResourceVersion, before.ResourceVersion)
		}
	})
}
