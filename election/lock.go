package election

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Record is the election record kept in the Lease. It has exactly the fields
// of client-go's resourcelock.LeaderElectionRecord (tests convert one into
// the other, so the compiler keeps them equal), and leasestore stores it as
// client-go does, so this sidecar and client-go's tools/leaderelection can
// share a Lease. It is not client-go's type itself because importing
// resourcelock pulls in every API group's scheme: about 9 MiB per process.
type Record struct {
	// HolderIdentity is the leader; empty when the Lease was released.
	HolderIdentity       string
	LeaseDurationSeconds int
	AcquireTime          metav1.Time
	RenewTime            metav1.Time
	// LeaderTransitions counts changes of holder: a fencing token.
	LeaderTransitions int
	// Strategy and PreferredHolder belong to coordinated leader election;
	// they are kept as found.
	Strategy        coordinationv1.CoordinatedLeaseStrategy
	PreferredHolder string
}

// Lease is one observed version of the lock: the record, this elector's
// notes beside it, and the opaque version (the Lease's resourceVersion) that
// an update must name to succeed.
type Lease struct {
	Record  Record
	Notes   Notes
	Version string
}

// Notes are what this elector keeps beside the record, outside client-go's
// LeaderElectionRecord: leasestore stores them as annotations of the Lease,
// which client-go's electors leave alone, so a Lease stays shareable with
// them. Empty fields are absent.
type Notes struct {
	// HolderUID is the holder's pod UID (POD_UID), written with every
	// acquire and renew. A restarted sidecar that finds its own identity and
	// pod UID here knows the term is its own and resumes it.
	HolderUID string
	// HolderKey is the holder's public key (Config.Key, as HolderKey
	// writes it), written with every acquire and renew: its standby checks
	// a take-over offer's signature against it.
	HolderKey string
	// Standby is a follower that offered, once in the holder's term, to be
	// the next leader: it is live and its app is healthy, as far as it knows.
	Standby string
	// StandbyAddress is where Standby takes a take-over offer (host:port
	// of its health port), written and cleared with Standby; empty when it
	// gave none.
	StandbyAddress string
}

// Lock is the storage the elector needs. Errors follow the API server's
// conventions: k8s.io/apimachinery/pkg/api/errors.IsNotFound for a missing
// Lease, IsConflict for an update whose version is no longer current.
type Lock interface {
	// Get reads the current Lease.
	Get(ctx context.Context) (Lease, error)
	// Create creates the Lease with rec and notes; it fails if the Lease exists.
	Create(ctx context.Context, rec Record, notes Notes) (Lease, error)
	// Update replaces the record and notes of prev, only if prev.Version is
	// still current.
	Update(ctx context.Context, prev Lease, rec Record, notes Notes) (Lease, error)
	// Watch sends what happens to the Lease to events until ctx ends, then
	// returns. It never closes events.
	Watch(ctx context.Context, events chan<- Event)
	// Describe names the lock for logs and errors, such as "ns/name".
	Describe() string
}

// A BaseUpdater is a Lock that can also update a version it has not seen,
// from the object of base, an earlier version it has seen, when the write
// of prev.Version was the holder's own write over base, which changed only
// the record and the notes that this update replaces. The elector uses it
// to take over on an offer for the holder's last renew before its watch
// delivered that renew (see Offer.Base); without it, it reads the Lease.
type BaseUpdater interface {
	UpdateFromBase(ctx context.Context, base string, prev Lease, rec Record, notes Notes) (Lease, error)
}

// EventType says what an Event reports.
type EventType int

const (
	// Observed carries a new version of the Lease.
	Observed EventType = iota
	// Deleted reports that the Lease no longer exists. Lease.Version is the
	// deletion's version when the watch knows it, so that the elector drops
	// it if it already knows a later version; without one (a re-list that
	// found nothing, say) an elector that knows a record reads the Lease
	// before it believes it.
	Deleted
	// WatchEstablished reports that events flow: followers need not poll.
	WatchEstablished
	// WatchLost reports that events may be missed until WatchEstablished.
	WatchLost
)

// Event is one thing a Lock's watch reports.
type Event struct {
	Type  EventType
	Lease Lease // for Observed
	Err   error // for WatchLost, when it has a cause
}

// newer reports whether version a is later than version b. Versions are opaque
// to clients in general, but the API server's are etcd revisions, which
// apimachinery's resourceversion package orders, so their order is used to
// drop stale watch events; a version that is not such a number is taken as
// newer when it differs, which costs at most one conflict and a re-read.
func newer(a, b string) bool {
	if b == "" {
		return true
	}
	if c, err := resourceversion.CompareResourceVersion(a, b); err == nil {
		return c > 0
	}
	return a != b
}

// sameRecord reports whether two records are the same observation of the
// holder's activity. Any change restarts the expiry clock.
func sameRecord(a, b Record) bool {
	return a.HolderIdentity == b.HolderIdentity &&
		a.LeaseDurationSeconds == b.LeaseDurationSeconds &&
		a.LeaderTransitions == b.LeaderTransitions &&
		a.AcquireTime.Equal(&b.AcquireTime) &&
		a.RenewTime.Equal(&b.RenewTime) &&
		a.PreferredHolder == b.PreferredHolder &&
		a.Strategy == b.Strategy
}
