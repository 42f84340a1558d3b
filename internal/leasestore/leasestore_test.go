package leasestore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/election"
)

const (
	testNamespace = "ns"
	testName      = "lock"
)

var leasesGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

// newClientset returns a fake clientset whose leases behave like the API
// server's in what the store relies on: every write gets a new
// resourceVersion, and an update naming a resourceVersion that is no longer
// current fails with a conflict. The fake's object tracker does neither.
func newClientset(t *testing.T) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset()
	var mu sync.Mutex
	version := 0
	cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var obj *coordinationv1.Lease
		switch a := a.(type) {
		case k8stesting.CreateActionImpl:
			obj = a.GetObject().(*coordinationv1.Lease).DeepCopy()
		case k8stesting.UpdateActionImpl:
			obj = a.GetObject().(*coordinationv1.Lease).DeepCopy()
		default:
			return false, nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		tracker := cs.Tracker()
		ns := a.GetNamespace()
		if a.GetVerb() == "update" {
			cur, err := tracker.Get(leasesGVR, ns, obj.Name)
			if err != nil {
				return true, nil, err
			}
			if rv := cur.(*coordinationv1.Lease).ResourceVersion; obj.ResourceVersion != rv {
				return true, nil, apierrors.NewConflict(leasesGVR.GroupResource(), obj.Name,
					fmt.Errorf("the object has been modified: resourceVersion %q, stored %q", obj.ResourceVersion, rv))
			}
		}
		version++
		obj.ResourceVersion = strconv.Itoa(version)
		var err error
		if a.GetVerb() == "create" {
			err = tracker.Create(leasesGVR, obj, ns)
		} else {
			err = tracker.Update(leasesGVR, obj, ns)
		}
		if err != nil {
			return true, nil, err
		}
		stored, err := tracker.Get(leasesGVR, ns, obj.Name)
		return true, stored, err
	})
	return cs
}

func newStore(cs *fake.Clientset) *Store {
	return New(cs.CoordinationV1().Leases(testNamespace), testNamespace, testName, time.Second, clock.RealClock{}, slog.New(slog.DiscardHandler))
}

func getLease(t *testing.T, cs *fake.Clientset, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(testNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease %s: %v", name, err)
	}
	return l
}

// at is a time the API server can store exactly: MicroTime keeps microseconds.
func at(sec, micro int) metav1.Time {
	return metav1.NewTime(time.Date(2026, 3, 1, 12, 0, sec, micro*1000, time.UTC))
}

func record(holder string, transitions int) election.Record {
	return election.Record{
		HolderIdentity:       holder,
		LeaseDurationSeconds: 15,
		AcquireTime:          at(1, 123456),
		RenewTime:            at(7, 654321),
		LeaderTransitions:    transitions,
	}
}

// clientGoSpec is the spec client-go's resourcelock makes of rec. The
// conversion to client-go's record type compiles only while the two types
// have the same fields.
func clientGoSpec(rec election.Record) coordinationv1.LeaseSpec {
	r := resourcelock.LeaderElectionRecord(rec)
	return resourcelock.LeaderElectionRecordToLeaseSpec(&r)
}

func TestCreateGetRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  election.Record
	}{
		{name: "held", rec: record("pod-a", 3)},
		{name: "released", rec: election.Record{LeaseDurationSeconds: 1, LeaderTransitions: 4, AcquireTime: at(1, 0), RenewTime: at(2, 1)}},
		{name: "coordinated election fields", rec: func() election.Record {
			r := record("pod-b", 0)
			r.PreferredHolder = "pod-c"
			r.Strategy = coordinationv1.OldestEmulationVersion
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := newClientset(t)
			s := newStore(cs)

			created, err := s.Create(ctx, tt.rec, election.Notes{})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			stored := getLease(t, cs, testName)
			if want := clientGoSpec(tt.rec); !apiequality.Semantic.DeepEqual(stored.Spec, want) {
				t.Errorf("stored spec = %+v, want %+v", stored.Spec, want)
			}

			// client-go's own lock writes the same spec ...
			ll := &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "client-go"}, Client: cs.CoordinationV1()}
			if err := ll.Create(ctx, resourcelock.LeaderElectionRecord(tt.rec)); err != nil {
				t.Fatalf("LeaseLock.Create: %v", err)
			}
			if theirs := getLease(t, cs, "client-go"); !apiequality.Semantic.DeepEqual(stored.Spec, theirs.Spec) {
				t.Errorf("spec = %+v, client-go's LeaseLock writes %+v", stored.Spec, theirs.Spec)
			}
			// ... and reads ours as the same record.
			ours := &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: testName}, Client: cs.CoordinationV1()}
			if rec, _, err := ours.Get(ctx); err != nil || !apiequality.Semantic.DeepEqual(election.Record(*rec), tt.rec) {
				t.Errorf("LeaseLock.Get = %+v, %v, want %+v", rec, err, tt.rec)
			}

			got, err := s.Get(ctx)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !apiequality.Semantic.DeepEqual(got.Record, tt.rec) {
				t.Errorf("Get record = %+v, want %+v", got.Record, tt.rec)
			}
			if got.Version == "" || got.Version != stored.ResourceVersion || created.Version != stored.ResourceVersion {
				t.Errorf("versions: Create %q, Get %q, want the stored resourceVersion %q", created.Version, got.Version, stored.ResourceVersion)
			}
			if !apiequality.Semantic.DeepEqual(created.Record, tt.rec) {
				t.Errorf("Create record = %+v, want %+v", created.Record, tt.rec)
			}
		})
	}
}

func TestLockErrors(t *testing.T) {
	ctx := context.Background()
	cs := newClientset(t)
	s := newStore(cs)
	if _, err := s.Get(ctx); !apierrors.IsNotFound(err) {
		t.Errorf("Get of a missing Lease: %v, want NotFound", err)
	}
	if _, err := s.Create(ctx, record("pod-a", 0), election.Notes{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Create(ctx, record("pod-b", 0), election.Notes{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second Create: %v, want AlreadyExists", err)
	}
	if got := getLease(t, cs, testName).Spec.HolderIdentity; *got != "pod-a" {
		t.Errorf("holder = %q after a failed Create, want pod-a", *got)
	}
}

func TestUpdateKeepsMetadata(t *testing.T) {
	tests := []struct {
		name string
		// fresh updates through a second Store, which has not seen the Lease.
		fresh bool
	}{
		{name: "from the store's cache"},
		{name: "store without a cache", fresh: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := newClientset(t)
			meta := metav1.ObjectMeta{
				Name: testName, Namespace: testNamespace,
				Labels:          map[string]string{"app": "web"},
				Annotations:     map[string]string{"note": "kept"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "uid-1"}},
			}
			old := record("pod-a", 1)
			if _, err := cs.CoordinationV1().Leases(testNamespace).Create(ctx, &coordinationv1.Lease{
				ObjectMeta: meta, Spec: clientGoSpec(old),
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}

			s := newStore(cs)
			prev, err := s.Get(ctx)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if tt.fresh {
				s = newStore(cs)
			}
			rec := record("pod-b", 2)
			updated, err := s.Update(ctx, prev, rec, election.Notes{})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}

			stored := getLease(t, cs, testName)
			if !apiequality.Semantic.DeepEqual(stored.Labels, meta.Labels) ||
				!apiequality.Semantic.DeepEqual(stored.Annotations, meta.Annotations) ||
				!apiequality.Semantic.DeepEqual(stored.OwnerReferences, meta.OwnerReferences) {
				t.Errorf("metadata after Update: labels %v, annotations %v, owners %v; want %v, %v, %v",
					stored.Labels, stored.Annotations, stored.OwnerReferences, meta.Labels, meta.Annotations, meta.OwnerReferences)
			}
			if want := clientGoSpec(rec); !apiequality.Semantic.DeepEqual(stored.Spec, want) {
				t.Errorf("spec after Update = %+v, want %+v", stored.Spec, want)
			}
			if updated.Version != stored.ResourceVersion || updated.Version == prev.Version {
				t.Errorf("Update version %q, want the new resourceVersion %q (was %q)", updated.Version, stored.ResourceVersion, prev.Version)
			}
			if !apiequality.Semantic.DeepEqual(updated.Record, rec) {
				t.Errorf("Update record = %+v, want %+v", updated.Record, rec)
			}
		})
	}
}

func TestUpdateStaleVersionConflicts(t *testing.T) {
	tests := []struct {
		name string
		// after returns the store to update through once the Lease changed
		// behind the store's back.
		after func(t *testing.T, s *Store, cs *fake.Clientset) *Store
	}{
		{
			// The store's own check: its cache is not prev, so it reads.
			name: "the store saw the newer version",
			after: func(t *testing.T, s *Store, _ *fake.Clientset) *Store {
				if _, err := s.Get(context.Background()); err != nil {
					t.Fatalf("Get: %v", err)
				}
				return s
			},
		},
		{
			name: "store without a cache",
			after: func(_ *testing.T, _ *Store, cs *fake.Clientset) *Store {
				return newStore(cs)
			},
		},
		{
			// The API server's check, which the store passes on as it is.
			name: "the store's cache is prev",
			after: func(_ *testing.T, s *Store, _ *fake.Clientset) *Store {
				return s
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := newClientset(t)
			s := newStore(cs)
			prev, err := s.Create(ctx, record("pod-a", 0), election.Notes{})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}

			// Another elector takes the Lease.
			other := getLease(t, cs, testName)
			other.Spec.HolderIdentity = ptr.To("pod-other")
			if _, err := cs.CoordinationV1().Leases(testNamespace).Update(ctx, other, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if now := getLease(t, cs, testName).ResourceVersion; now == prev.Version {
				t.Fatalf("resourceVersion stayed %q: the fake does not bump it", now)
			}

			_, err = tt.after(t, s, cs).Update(ctx, prev, record("pod-a", 0), election.Notes{})
			if !apierrors.IsConflict(err) {
				t.Errorf("Update with stale version %q: %v, want a conflict", prev.Version, err)
			}
			if got := *getLease(t, cs, testName).Spec.HolderIdentity; got != "pod-other" {
				t.Errorf("holder = %q after a stale Update, want pod-other", got)
			}
		})
	}
}

// TestUpdateFromBase: a store that saw version base, but not the holder's
// renew over it, takes over on the renew's version in one request, the
// update, keeping the metadata; a store that did not see base reads first,
// as Update does; and a version that is no longer current is a conflict.
func TestUpdateFromBase(t *testing.T) {
	tests := []struct {
		name string
		// seen is the version the successor's store saw last: "base", the
		// renew's ("renew"), or none.
		seen     string
		stale    bool // the renew is overwritten before the take-over
		requests int  // the successor's requests in UpdateFromBase
		conflict bool
	}{
		{name: "the store saw base", seen: "base", requests: 1},
		{name: "the store saw the renew", seen: "renew", requests: 1},
		{name: "the store saw nothing", requests: 2},
		{name: "the renew is no longer current", seen: "base", stale: true, requests: 1, conflict: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := newClientset(t)
			meta := metav1.ObjectMeta{Name: testName, Namespace: testNamespace,
				Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "kept"}}
			if _, err := cs.CoordinationV1().Leases(testNamespace).Create(ctx, &coordinationv1.Lease{
				ObjectMeta: meta, Spec: clientGoSpec(record("pod-a", 1))}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			holder, successor := newStore(cs), newStore(cs)
			base, err := holder.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tt.seen == "base" {
				if _, err := successor.Get(ctx); err != nil {
					t.Fatal(err)
				}
			}
			renewed := record("pod-a", 1)
			renewed.RenewTime = at(9, 0)
			renew, err := holder.Update(ctx, base, renewed, election.Notes{HolderKey: "key-a", Standby: "pod-b"})
			if err != nil {
				t.Fatalf("the holder's renew: %v", err)
			}
			if tt.seen == "renew" {
				if _, err := successor.Get(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tt.stale {
				if _, err := holder.Update(ctx, renew, renewed, election.Notes{HolderKey: "key-a"}); err != nil {
					t.Fatal(err)
				}
			}
			before := len(cs.Actions())
			rec := record("pod-b", 2)
			got, err := successor.UpdateFromBase(ctx, base.Version, renew, rec, election.Notes{HolderKey: "key-b"})
			if n := len(cs.Actions()) - before; n != tt.requests {
				t.Errorf("UpdateFromBase sent %d requests, want %d", n, tt.requests)
			}
			stored := getLease(t, cs, testName)
			if tt.conflict {
				if !apierrors.IsConflict(err) || *stored.Spec.HolderIdentity != "pod-a" {
					t.Fatalf("UpdateFromBase over a version no longer current: %v, holder %q; want a conflict, pod-a", err, *stored.Spec.HolderIdentity)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateFromBase: %v", err)
			}
			wantAnn := map[string]string{"note": "kept", AnnotationHolderKey: "key-b"}
			if !apiequality.Semantic.DeepEqual(stored.Labels, meta.Labels) || !apiequality.Semantic.DeepEqual(stored.Annotations, wantAnn) {
				t.Errorf("metadata after UpdateFromBase: labels %v, annotations %v; want %v, %v", stored.Labels, stored.Annotations, meta.Labels, wantAnn)
			}
			if want := clientGoSpec(rec); !apiequality.Semantic.DeepEqual(stored.Spec, want) {
				t.Errorf("spec after UpdateFromBase = %+v, want %+v", stored.Spec, want)
			}
			if got.Version != stored.ResourceVersion || got.Version == renew.Version {
				t.Errorf("UpdateFromBase version %q, want the new resourceVersion %q", got.Version, stored.ResourceVersion)
			}
		})
	}
}

func TestGetRejectsInvalidLease(t *testing.T) {
	tests := []struct {
		name  string
		spec  coordinationv1.LeaseSpec
		reply *coordinationv1.Lease // what the API answers instead, if set
		want  []string
	}{
		{
			name: "negative duration",
			spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("pod-a"), LeaseDurationSeconds: ptr.To[int32](-5)},
			want: []string{"ns/lock", "spec.leaseDurationSeconds", "-5"},
		},
		{
			name: "negative transitions",
			spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("pod-a"), LeaseDurationSeconds: ptr.To[int32](15), LeaseTransitions: ptr.To[int32](-1)},
			want: []string{"ns/lock", "spec.leaseTransitions", "-1"},
		},
		{
			name:  "another Lease",
			reply: &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "other", ResourceVersion: "9"}},
			want:  []string{"ns/lock", "ns/other"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := newClientset(t)
			// The fake, unlike the API server, does not validate.
			if _, err := cs.CoordinationV1().Leases(testNamespace).Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: testName}, Spec: tt.spec,
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if tt.reply != nil {
				cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, tt.reply.DeepCopy(), nil
				})
			}

			s := newStore(cs)
			got, err := s.Get(ctx)
			if err == nil {
				t.Fatalf("Get = %+v, want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Get error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		namespace, name, want string
	}{
		{"ns", "name", "ns/name"},
		{"kube-system", "my-app-lock", "kube-system/my-app-lock"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s := New(fake.NewClientset().CoordinationV1().Leases(tt.namespace), tt.namespace, tt.name, time.Second, clock.RealClock{}, slog.New(slog.DiscardHandler))
			if got := s.Describe(); got != tt.want {
				t.Errorf("Describe() = %q, want %q", got, tt.want)
			}
		})
	}
}
