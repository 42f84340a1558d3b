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
// releases the Lease. Acquiring runs the other way: the Lease is won, then
// OnStartedLeading runs.
//
// # A step-down that cannot be withdrawn
//
// OnStoppedLeading returns an error when the app may still act as leader
// (the sidecar's status file could not be removed). Then the candidate has
// not stepped down: it no longer leads (State.IsLeader is false, Leading too),
// but it keeps the Lease, renewing it every RetryPeriod as in a term, sends
// no release, offer or grant, offers itself as nobody's standby and
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
// Besides expiry, leadership moves on purpose: a standby that offers to
// lead next, a handover on request, the app's health, and a restarted
// candidate that finds its own term in the Lease.
//
// # Standby and successor
//
// Once per term, a healthy follower offers to lead next: it writes its
// identity as Notes.Standby, with the record unchanged, so that no
// follower's expiry clock restarts. Followers spread their offers over a
// RetryPeriod by a rank each computes from its identity and the term, and
// the first offer seen ends the others', so one write, rarely two, is sent
// per term. A standby whose app turns unhealthy, or that shuts down,
// withdraws its offer.
//
// A leader that steps down gracefully names the standby as successor in its
// release. The successor takes the Lease at once; every other follower of
// this package waits a RetryPeriod before it tries, so a handover costs one
// write however many followers watch. If the successor died since its
// offer, the others take the Lease after that RetryPeriod.
//
// # Nudge
//
// A standby with an Address (the sidecar's POD_IP:HEALTH_PORT) writes it
// beside its offer. A leader that released naming that standby as successor,
// or granted it the Lease, then calls Callbacks.Nudge with the address, and
// the sidecar sends the standby one request there, which calls its Poke: it
// reads the Lease at once, instead of waiting for its watch, which on a
// Lease with hundreds of watchers delivers the release many milliseconds
// later. The nudge carries nothing: the standby decides on the record it
// read, by the rules it applies to a watch event, so a nudge from anyone
// costs at most one read per PokeInterval and can make no candidate write
// what it would not have written on a watch event.
//
// # Handover on request
//
// Handover("") steps down and releases as above. Handover(peer) steps down
// and then writes peer as holder, with a fresh renew time and GrantedBy
// naming this candidate. Peer confirms the term by a renew with its own pod
// UID, and leads once that write succeeded; if peer is dead the Lease
// expires as any other. Every candidate leads only after a write of its own
// succeeded, so two candidates that share an identity cannot both lead on
// one grant: one confirm wins, the other's answers 409.
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
//     (an acquire, or the confirm of a grant or a resumed term) until it
//     steps down; State.Transitions counts them.
//   - step-down: the end of a term: OnStoppedLeading, then the Lease is
//     released, granted or left alone. Withheld while OnStoppedLeading fails.
//   - release: a record with no holder and a LeaseDurationSeconds of 1, as
//     client-go's ReleaseOnCancel writes it; it may name a successor.
//   - standby: the follower that offered, once per term, to lead next
//     (Notes.Standby); a release names it as successor.
//   - take-over: the standby writes itself as holder on the leader's signed
//     offer, in one write, instead of a release and an acquire (takeover.go).
//   - grant: Handover(peer), resign --to: the leader writes peer as holder,
//     and peer confirms the term or refuses it (grant.go).
//   - nudge: a request that makes the successor read the Lease at once
//     (Poke), instead of waiting for its watch (poke.go).
//   - resume: a restarted candidate confirms its own term, proven by its pod
//     UID (restart.go).
//
// # Files
//
// elector.go holds the public API and Run; loop.go the loop's state and
// what it does at each tick; view.go what a candidate knows of the Lease
// and when it may campaign; term.go how a term is won, renewed and ended;
// withheld.go a step-down that waits for its callback; standby.go,
// takeover.go, grant.go and poke.go the ways leadership moves on purpose;
// restart.go a restarted candidate's own term; health.go the app's health;
// write.go the one path of every write of the Lease (its timeout, what a
// conflict means, NotFound, and observing the answer).
package election
