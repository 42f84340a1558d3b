// Package leasestore keeps the election record in a coordination.k8s.io/v1
// Lease, written exactly as client-go's resourcelock.LeaseLock writes it, and
// watches that one Lease so that followers learn of changes without polling.
package leasestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/lasterr"
)

// Leases is what the store needs of the Lease API in one namespace; client-go's
// typed LeaseInterface has it, and so does the sidecar's kubeclient.Leases.
type Leases interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Store is an election.Lock on one Lease.
type Store struct {
	leases    Leases
	namespace string
	name      string
	log       *slog.Logger
	// retry spaces out re-reads while the API server cannot be reached.
	retry time.Duration
	clock clock.Clock

	mu   sync.Mutex
	last *coordinationv1.Lease // newest object seen, to update it in full
}

var _ election.Lock = (*Store)(nil)

// New returns a Store for the Lease namespace/name; leases is the Lease API
// of that namespace. retry is the longest the watch waits, on clk, before it
// reads again after a failure.
func New(leases Leases, namespace, name string, retry time.Duration, clk clock.Clock, log *slog.Logger) *Store {
	return &Store{leases: leases, namespace: namespace, name: name, retry: retry, clock: clk, log: log}
}

// Describe names the Lease.
func (s *Store) Describe() string { return s.namespace + "/" + s.name }

// Get reads the Lease.
func (s *Store) Get(ctx context.Context) (election.Lease, error) {
	l, err := s.leases.Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return election.Lease{}, err
	}
	return s.remember(l)
}

// Create creates the Lease holding rec, with notes as its annotations.
func (s *Store) Create(ctx context.Context, rec election.Record, notes election.Notes) (election.Lease, error) {
	l, err := s.leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Annotations: withNotes(nil, notes)},
		Spec:       specFromRecord(rec),
	}, metav1.CreateOptions{})
	if err != nil {
		return election.Lease{}, err
	}
	return s.remember(l)
}

// Update writes rec and notes if prev.Version is still the Lease's
// resourceVersion. The rest of the object (labels, other annotations,
// owners) is kept as it is.
func (s *Store) Update(ctx context.Context, prev election.Lease, rec election.Record, notes election.Notes) (election.Lease, error) {
	s.mu.Lock()
	obj := s.last
	s.mu.Unlock()
	if obj == nil || obj.ResourceVersion != prev.Version {
		// Rare: the cache moved on. Never update from a made-up object, which
		// would drop metadata: read, and update only if nothing changed.
		cur, err := s.leases.Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			return election.Lease{}, err
		}
		if cur.ResourceVersion != prev.Version {
			return election.Lease{}, apierrors.NewConflict(coordinationv1.Resource("leases"), s.name,
				fmt.Errorf("resourceVersion %s is no longer current (now %s)", prev.Version, cur.ResourceVersion))
		}
		obj = cur
	}
	return s.update(ctx, obj, prev.Version, rec, notes)
}

// UpdateFromBase is Update over prev.Version, which this Store may not have
// seen yet, built from the object of base when that is the last it saw:
// the holder's write of prev.Version over base changed only the record and
// the notes, which this update replaces, so nothing else is lost
// (election.BaseUpdater). Otherwise it is Update.
func (s *Store) UpdateFromBase(ctx context.Context, base string, prev election.Lease, rec election.Record, notes election.Notes) (election.Lease, error) {
	s.mu.Lock()
	obj := s.last
	s.mu.Unlock()
	if obj == nil || obj.ResourceVersion != base {
		return s.Update(ctx, prev, rec, notes)
	}
	return s.update(ctx, obj, prev.Version, rec, notes)
}

// update writes rec and notes into a copy of obj, on version.
func (s *Store) update(ctx context.Context, obj *coordinationv1.Lease, version string, rec election.Record, notes election.Notes) (election.Lease, error) {
	obj = obj.DeepCopy()
	obj.ResourceVersion = version
	obj.Spec = specFromRecord(rec)
	obj.Annotations = withNotes(obj.Annotations, notes)
	l, err := s.leases.Update(ctx, obj, metav1.UpdateOptions{})
	if err != nil {
		return election.Lease{}, err
	}
	return s.remember(l)
}

// remember keeps l if it is the newest version seen and converts it.
func (s *Store) remember(l *coordinationv1.Lease) (election.Lease, error) {
	if l.Name != s.name || l.Namespace != s.namespace {
		return election.Lease{}, fmt.Errorf("lease %s: the API returned %s/%s", s.Describe(), l.Namespace, l.Name)
	}
	if err := validate(l); err != nil {
		return election.Lease{}, fmt.Errorf("lease %s: %w", s.Describe(), err)
	}
	s.mu.Lock()
	if s.last == nil || s.last.ResourceVersion != l.ResourceVersion {
		s.last = l
	}
	s.mu.Unlock()
	return election.Lease{Record: recordFromSpec(&l.Spec), Notes: notesFrom(l.Annotations), Version: l.ResourceVersion}, nil
}

// specFromRecord and recordFromSpec convert as client-go's resourcelock does
// (LeaderElectionRecordToLeaseSpec, LeaseSpecToLeaderElectionRecord); the
// tests compare them with those.
func specFromRecord(r election.Record) coordinationv1.LeaseSpec {
	duration, transitions := int32(r.LeaseDurationSeconds), int32(r.LeaderTransitions)
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &r.HolderIdentity,
		LeaseDurationSeconds: &duration,
		AcquireTime:          &metav1.MicroTime{Time: r.AcquireTime.Time},
		RenewTime:            &metav1.MicroTime{Time: r.RenewTime.Time},
		LeaseTransitions:     &transitions,
	}
	if r.PreferredHolder != "" {
		spec.PreferredHolder = &r.PreferredHolder
	}
	if r.Strategy != "" {
		spec.Strategy = &r.Strategy
	}
	return spec
}

func recordFromSpec(spec *coordinationv1.LeaseSpec) election.Record {
	var r election.Record
	if spec.HolderIdentity != nil {
		r.HolderIdentity = *spec.HolderIdentity
	}
	if spec.LeaseDurationSeconds != nil {
		r.LeaseDurationSeconds = int(*spec.LeaseDurationSeconds)
	}
	if spec.LeaseTransitions != nil {
		r.LeaderTransitions = int(*spec.LeaseTransitions)
	}
	if spec.AcquireTime != nil {
		r.AcquireTime = metav1.Time{Time: spec.AcquireTime.Time}
	}
	if spec.RenewTime != nil {
		r.RenewTime = metav1.Time{Time: spec.RenewTime.Time}
	}
	if spec.PreferredHolder != nil {
		r.PreferredHolder = *spec.PreferredHolder
	}
	if spec.Strategy != nil {
		r.Strategy = *spec.Strategy
	}
	return r
}

// validate rejects records that no elector could have written, so a hand-made
// or corrupted Lease is reported instead of being trusted.
func validate(l *coordinationv1.Lease) error {
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d < 0 {
		return fmt.Errorf("spec.leaseDurationSeconds is %d: must not be negative", *d)
	}
	if t := l.Spec.LeaseTransitions; t != nil && *t < 0 {
		return fmt.Errorf("spec.leaseTransitions is %d: must not be negative", *t)
	}
	return nil
}

// Watch reports changes of the Lease until ctx ends: it lists the Lease by
// name, then watches it from the list's resourceVersion (resuming from the
// last one seen when the stream breaks) and lists again when the server
// answers 410 Gone. It reports WatchLost whenever events may be missed. A
// missing Lease is watched too, so its creation is seen at once.
//
// When the watch cannot be established (the list fails, or the watch is
// refused, as with a Role that grants list but not watch), Watch waits with
// a back-off from retry/4 up to retry before it lists again, and logs the
// cause once, not on every turn.
func (s *Store) Watch(ctx context.Context, events chan<- election.Event) {
	send := func(ev election.Event) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	trouble := lasterr.New(s.log.With("lease", s.Describe()),
		"cannot watch the lease; retrying with back-off", "lease watch established again")
	// The RetryWatcher logs through the context on every failed attempt;
	// each failure reaches the election as a WatchLost event, and the log
	// through trouble, instead.
	wctx := klog.NewContext(ctx, logr.Discard())
	backoff := s.backoff()
	for ctx.Err() == nil {
		rv, err := s.relist(ctx, send)
		if err == nil {
			var established bool
			if established, err = s.follow(wctx, rv, send, trouble); established {
				backoff = s.backoff()
				continue
			}
		} else if ctx.Err() == nil && !send(election.Event{Type: election.WatchLost, Err: err}) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			trouble.Note(err)
		}
		if !s.sleep(ctx, backoff.Step()) {
			return
		}
	}
}

func (s *Store) backoff() wait.Backoff {
	return wait.Backoff{Duration: s.retry / 4, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: s.retry}
}

// relist lists the Lease by name and reports it, or its absence. It returns
// the list's resourceVersion to watch from: the collection's, which is
// current, not the object's, which may be older than the API server keeps
// history for (a watch from it would answer 410 again).
func (s *Store) relist(ctx context.Context, send func(election.Event) bool) (string, error) {
	list, err := s.leases.List(ctx, metav1.ListOptions{FieldSelector: s.selector()})
	if err != nil {
		return "", fmt.Errorf("list lease %s: %w", s.Describe(), err)
	}
	if len(list.Items) == 0 {
		send(election.Event{Type: election.Deleted})
		return list.ResourceVersion, nil
	}
	lease, err := s.remember(&list.Items[0])
	if err != nil {
		return "", err
	}
	send(election.Event{Type: election.Observed, Lease: lease})
	return list.ResourceVersion, nil
}

func (s *Store) selector() string {
	return fields.OneTermEqualSelector("metadata.name", s.name).String()
}

// follow watches from rv until the history is gone (410), the watch is
// refused, or ctx ends. It reports whether the watch was ever established
// and, if not, why; it notes an established watch as a recovery on trouble.
func (s *Store) follow(ctx context.Context, rv string, send func(election.Event) bool, trouble *lasterr.Tracker) (bool, error) {
	f := &following{s: s, selector: s.selector(), send: send, trouble: trouble}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{WatchFuncWithContext: f.watch})
	if err != nil {
		err = fmt.Errorf("watch lease %s: %w", s.Describe(), err)
		send(election.Event{Type: election.WatchLost, Err: err})
		return false, err
	}
	defer func() { rw.Stop(); <-rw.Done() }()
	for ev := range rw.ResultChan() {
		if !f.deliver(ev) {
			return f.ever, f.cause
		}
	}
	if f.established {
		send(election.Event{Type: election.WatchLost})
	}
	return f.ever, f.cause
}

// following is one follow's watch: whether it is established, whether it
// ever was, and why it ended.
type following struct {
	s           *Store
	selector    string
	send        func(election.Event) bool
	trouble     *lasterr.Tracker
	established bool
	ever        bool
	cause       error
}

// watch starts a watch for the RetryWatcher and reports whether it was
// established.
func (f *following) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if f.established {
		f.established = false
		f.send(election.Event{Type: election.WatchLost})
	}
	opts.FieldSelector = f.selector
	w, err := f.s.leases.Watch(ctx, opts)
	switch {
	case apierrors.IsGone(err) || apierrors.IsResourceExpired(err):
		// RetryWatcher retries these with the same stale version; hand it a
		// 410 in the stream instead, which ends it, so that we read again.
		return gone(err), nil
	case err != nil:
		f.cause = fmt.Errorf("watch lease %s: %w", f.s.Describe(), err)
		f.send(election.Event{Type: election.WatchLost, Err: f.cause})
		return nil, err
	}
	f.established, f.ever, f.cause = true, true, nil
	f.trouble.Note(nil)
	f.send(election.Event{Type: election.WatchEstablished})
	return w, nil
}

// deliver passes ev on to the election; false when the follow ends.
func (f *following) deliver(ev watch.Event) bool {
	s := f.s
	switch ev.Type {
	case watch.Added, watch.Modified:
		l, ok := ev.Object.(*coordinationv1.Lease)
		if !ok {
			return true
		}
		lease, err := s.remember(l)
		if err != nil {
			f.send(election.Event{Type: election.WatchLost, Err: err})
			return true
		}
		return f.send(election.Event{Type: election.Observed, Lease: lease})
	case watch.Deleted:
		l, _ := ev.Object.(*coordinationv1.Lease)
		var version string
		if l != nil {
			version = l.ResourceVersion
		}
		return f.send(election.Event{Type: election.Deleted, Lease: election.Lease{Version: version}})
	case watch.Error:
		err := apierrors.FromObject(ev.Object)
		var status apierrors.APIStatus
		if errors.As(err, &status) && status.Status().Code == http.StatusGone {
			s.log.Info("lease watch history is gone (410); reading the lease again", "lease", s.Describe())
			f.send(election.Event{Type: election.WatchLost})
			if f.cause == nil {
				f.cause = fmt.Errorf("watch lease %s: %w", s.Describe(), err)
			}
			return false
		}
		if f.cause == nil {
			// Forbidden or Unauthorized: the RetryWatcher gives up. watch
			// reported it already.
			f.cause = fmt.Errorf("watch lease %s: %w", s.Describe(), err)
			f.send(election.Event{Type: election.WatchLost, Err: f.cause})
		}
		return false
	}
	return true
}

// gone is a watch whose only event is err as a 410 status.
func gone(err error) watch.Interface {
	ch := make(chan watch.Event, 1)
	status := apierrors.NewResourceExpired(err.Error()).ErrStatus
	ch <- watch.Event{Type: watch.Error, Object: &status}
	close(ch)
	return watch.NewProxyWatcher(ch)
}

// sleep waits d on the store's clock; false when ctx ended first.
func (s *Store) sleep(ctx context.Context, d time.Duration) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
