package election

import "time"

// PokeInterval is the least time between two reads of the Lease that pokes
// cause, between two that take-over offers cause, and between two pokes
// that Poke accepts.
const PokeInterval = 100 * time.Millisecond

// Poke asks the candidate to read the Lease now rather than wait for its
// watch, because its leader said it was released or handed over (see
// Callbacks.Nudge). A poke carries nothing: the record read is taken in as a
// watch event would be, and the election's rules alone decide what follows.
// A leader reads nothing on a poke, nor does a follower whose view of the
// Lease names it neither standby nor successor: a nudge is sent only to
// those, so anyone else's pokes cost no request. Reads that pokes cause are at least
// PokeInterval apart: a poke within PokeInterval of the last accepted one is
// refused (Poke returns false), and its read follows at the end of that
// interval, so a nudge that comes right after anyone's poke still arrives.
// Poke does not block.
func (e *Elector) Poke() bool {
	now := e.cfg.Clock.Now()
	e.pokeMu.Lock()
	accepted := e.pokedAt.IsZero() || !now.Before(e.pokedAt.Add(PokeInterval))
	if accepted {
		e.pokedAt = now
	}
	e.pokeMu.Unlock()
	select {
	case e.poke <- struct{}{}:
	default: // a poke is pending already
	}
	return accepted
}

// poked schedules the read a poke asks for at now: at once, or PokeInterval
// after the last one.
func (r *run) poked(now time.Time) {
	if r.leading || !r.pokeAt.IsZero() || !r.nudgeable() {
		return
	}
	r.pokeAt = now
	if !r.pokeRead.IsZero() {
		r.pokeAt = later(now, r.pokeRead.Add(PokeInterval))
	}
}

// nudgeable reports whether a leader may nudge this candidate: the Lease as
// it knows it names it standby, or successor in a release.
func (r *run) nudgeable() bool {
	n := r.lease.Notes
	return r.view == viewKnown && (n.Standby == r.cfg.Identity || n.Successor == r.cfg.Identity)
}

// nudge tells the candidate identity, at address, that the Lease changed for
// it, if it gave an address and a Nudge callback is set.
func (r *run) nudge(identity, address string) {
	if address == "" || r.cfg.Callbacks.Nudge == nil {
		return
	}
	r.log.Debug("nudging the successor", "successor", identity, "address", address)
	r.cfg.Callbacks.Nudge(identity, address)
}
