// Package chaos is the fault suite of the sidecar: two workloads of three
// sidecars each run on the local control plane with the endpointslice
// controller, every sidecar behind its own proxy, and each round injects one
// fault chosen from a logged seed, then checks from recorders of the status
// files, the Leases and the EndpointSlices that no two leaders and no two
// routed pods ever existed, and that one leader is back in time.
//
// `make chaos` runs 200 rounds; `go test ./chaos/` runs a short version.
// CHAOS_SEED replays a run, CHAOS_ROUNDS sets the number of rounds, and
// CHAOS_BINARY runs another build of the sidecar instead of this tree's
// (CHAOS_SIDECAR_ENV="KEY=VALUE ..." adds to its environment).
package chaos
