package leasestore

import "k8s.io/apimachinery/pkg/types"

// UID is the uid of the newest version of the Lease seen, empty before the
// first. Events about the Lease carry it, since `kubectl describe lease`
// selects events by the Lease's uid as well as by its name.
func (s *Store) UID() types.UID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return ""
	}
	return s.last.UID
}
