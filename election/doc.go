// Package election elects one leader among candidates that share a Lease.
//
// Followers watch the Lease instead of polling it and take it the moment it is
// released, or once its record has stayed unchanged for LeaseDuration on their
// own monotonic clock. The leader renews every RetryPeriod and steps down when
// RenewDeadline has passed since it sent its last successful renew. Because a
// follower can only have seen that renew after it was sent, and
// RenewDeadline < LeaseDuration, the leader has stepped down before any
// follower may judge the Lease expired, as long as the two clocks' rates differ
// by less than the factor LeaseDuration/RenewDeadline.
//
// # Releases, cleared holders and deleted Leases
//
// A Lease counts as released only when its record looks like a release: no
// holder and a LeaseDurationSeconds of 1, as this package and client-go's
// ReleaseOnCancel write it. A follower takes a released Lease at once.
//
// Any other record, also one whose holder was cleared by hand or by a tool
// that re-applies a declared Lease, waits like an unchanged record: its
// expiry (LeaseDuration, or the record's LeaseDurationSeconds if larger)
// after the follower first saw it, and never less than the expiry of every
// holder it saw since the last release, counted from when it first saw that
// holder's last record. So clearing a holder, or naming one by hand, never
// shortens the wait for a holder that may still lead.
//
// A deleted Lease is treated like an unchanged record too. A candidate that
// has seen a record of the Lease and finds it missing (a Deleted event, or a
// read or write answered NotFound) puts it back at once, as an empty record
// with its own LeaseDuration (never 1 second, which would read as a release)
// and the last transitions it saw, and takes that record like any other: by
// an update, once it expired. It does not create the Lease as its holder,
// because a create carries no version: if the Lease is deleted between two
// candidates' creates, both succeed, and both would lead. Every holder that
// may lead wrote its last renew before the deletion, so before the put-back
// record was first seen, and it steps down within RenewDeadline of that
// renew. This holds whether or not the follower saw the renews before the
// deletion. A leader that finds its Lease deleted (from its watch, or its
// renew answered NotFound) steps down, without a release, and then acts as
// any follower: it puts the Lease back and waits, so it cannot take the
// Lease straight back and flap.
//
// The one exception is the first start: a candidate that has seen no record
// of the Lease and finds none creates it as its holder and leads at once, as
// client-go's does. If the Lease was deleted just before, while a leader's
// requests hang and its watch is stalled, both lead until that leader's
// renew deadline. Followers that already run put a deleted Lease back within
// one watch event, which closes this window for candidates that start later.
//
// # Callbacks
//
// The package knows nothing about files, labels or HTTP: it reports leadership
// through Callbacks and State, and others react. Callbacks run on the election
// loop, so no renew is sent while one runs: OnStartedLeading's context ends at
// the renew deadline (RenewDeadline after the winning write was sent), and a
// candidate whose OnStartedLeading outlasts it steps down as soon as it
// returns.
//
// Stepping down runs in this order: the candidate stops believing it leads,
// OnStoppedLeading runs (the sidecar removes the status file and sets the role
// label to follower there), then the Lease is released if it is still ours.
// Both run on a context that outlives the end of Run's context, each with its
// own bound (RetryPeriod for the callback, RenewDeadline for the release on
// shutdown or resignation), so that a SIGTERM during a step-down still
// hands the Lease on. Acquiring runs the other way: the Lease is won, then
// OnStartedLeading runs.
//
// # A step-down that cannot be withdrawn
//
// OnStoppedLeading returns an error when the app may still act as leader
// (the sidecar's status file could not be removed). Then the candidate has
// not stepped down: it no longer leads (State.IsLeader is false, Leading too),
// but it keeps the Lease, renewing it every RetryPeriod as in a term, sends
// no release or take-over offer, offers itself as nobody's standby and
// campaigns for nothing, and retries the callback with a back-off
// (RetryPeriod, doubling, up to RenewDeadline), reported in
// State.Withdrawing. Once the callback succeeds the step-down goes on as
// usual. This holds after Run's context ended too: Run returns only once the
// callback succeeded, or never, until the process is killed. A step-down
// that found the Lease already another's, deleted, or unrenewable cannot
// keep it: that candidate retries the callback and campaigns for nothing
// until it succeeds, but the Lease's next holder may lead meanwhile.
//
// # Moving leadership on purpose
//
// Besides expiry, leadership moves on purpose: a handover on request
// (Handover, resign), the app's health, a pod's deletion (Retire), and a
// restarted candidate that finds its own term in the Lease. Every one of
// them but the last moves it the same way: the take-over.
//
// # Standby
//
// Once per term, a healthy follower offers to lead next: it writes its
// identity as Notes.Standby, and with an Address where it takes a
// take-over offer (the sidecar's POD_IP:HEALTH_PORT) Notes.StandbyAddress,
// with the record unchanged, so that no follower's expiry clock restarts.
// Followers spread their offers over a RetryPeriod by a rank each computes
// from its identity and the term, and the first offer seen ends the
// others', so one write, rarely two, is sent per term. A standby whose app
// turns unhealthy, or that shuts down or retires, withdraws its offer. The
// standby is whom a leader hands the Lease to when nobody is named.
//
// # Take-over
//
// A step-down that hands the Lease on offers it to one successor (the
// candidate named by Handover or Retire, else the standby) by a signed
// offer that the successor takes by one write of its own (see Offer and
// takeover.go), and then releases it on the offered version: once the
// successor wrote, that release answers 409, the proof of the take-over;
// when nobody took it, the Lease is released as client-go's ReleaseOnCancel
// does, and any follower takes it at once. Without a Key and
// Callbacks.HandOff, or a successor with an address, a step-down releases.
// Handover(peer) returns ErrNotTaken, with the peer's reason, when the
// peer did not take the Lease; it was released then.
//
// # Restarts
//
// A candidate that does not lead and finds its identity as holder resumes
// the term, by a confirm as above, when the record's HolderUID is its own
// pod UID: the record was written by this pod's sidecar before it restarted,
// and no other process of this pod can lead. When it cannot prove that (the
// record carries no UID), it releases the Lease at once, once, on its first
// look, so that a peer takes over in milliseconds. A record naming its
// identity with another pod's UID is another pod's term: it waits for it to
// expire like any follower and says so in its log.
//
// # Glossary
//
//   - term: one candidate's leadership, from the write that made it holder
//     (an acquire, a take-over, or the confirm of a resumed term) until it
//     steps down; State.Transitions counts them.
//   - step-down: the end of a term: OnStoppedLeading, then the Lease is
//     taken over, released or left alone. Withheld while OnStoppedLeading
//     fails.
//   - release: a record with no holder and a LeaseDurationSeconds of 1, as
//     client-go's ReleaseOnCancel writes it.
//   - standby: the follower that offered, once per term, to lead next
//     (Notes.Standby), the successor when nobody is named.
//   - successor: the candidate a step-down offers the Lease to.
//   - take-over: the successor writes itself as holder on the leader's
//     signed offer, in one write, instead of a release and an acquire
//     (takeover.go); the way every handover goes (handover.go).
//   - resume: a restarted candidate confirms its own term, proven by its pod
//     UID (restart.go).
//
// # Files
//
// elector.go holds the public API and Run; loop.go the loop's state and
// what it does at each tick; view.go what a candidate knows of the Lease
// and when it may campaign; term.go how a term is won, renewed and ended;
// withheld.go a step-down that waits for its callback; handover.go the
// requests that move leadership on purpose, standby.go the standby's offer
// and takeover.go the one way they move it;
// restart.go a restarted candidate's own term; health.go the app's health;
// write.go the one path of every write of the Lease (its timeout, what a
// conflict means, NotFound, and observing the answer).
package election
