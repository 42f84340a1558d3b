package serviceslice

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// write makes the slice name this pod: it creates it, or replaces the
// previous leader's endpoint in it.
func (w *Writer) write(ctx context.Context, gen int) error {
	svc, err := w.service(ctx)
	if err != nil {
		return err
	}
	want := w.slice(svc)
	// Create first: after a graceful handover the previous leader has
	// deleted the slice, and one request less is a shorter handover.
	if err := w.wish.Fence(ctx, gen); err != nil {
		return err
	}
	created, err := w.cfg.Slices.Create(ctx, want, metav1.CreateOptions{})
	switch {
	case err == nil:
		w.wrote(created, "created the Service's EndpointSlice: it names this pod", "")
		return nil
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("create EndpointSlice %s/%s: %w", w.cfg.Namespace, w.name, err)
	}
	cur, err := w.cfg.Slices.Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read EndpointSlice %s/%s: %w", w.cfg.Namespace, w.name, err)
	}
	if m := cur.Labels[discoveryv1.LabelManagedBy]; m != ManagedBy {
		return fmt.Errorf("EndpointSlice %s/%s is managed by %q, not %s: refusing to take it over; delete it", w.cfg.Namespace, w.name, m, ManagedBy)
	}
	if cur.AddressType != want.AddressType {
		// addressType cannot change: delete the slice, then create it.
		if err := w.wish.Fence(ctx, gen); err != nil {
			return err
		}
		if err := w.delete(ctx, cur); err != nil {
			return err
		}
		return w.write(ctx, gen)
	}
	next := merged(cur, want)
	if apiequality.Semantic.DeepEqual(cur, next) {
		w.wrote(cur, "the Service's EndpointSlice names this pod already", "")
		return nil
	}
	if err := w.wish.Fence(ctx, gen); err != nil {
		return err
	}
	updated, err := w.cfg.Slices.Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update EndpointSlice %s/%s: %w", w.cfg.Namespace, w.name, err)
	}
	w.wrote(updated, "replaced the previous endpoint of the Service's EndpointSlice: it names this pod", cur.Annotations[HolderAnnotation])
	return nil
}

// merged is cur with want's labels, annotations, owner, endpoints and
// ports: what an update of cur to want sends, keeping what others added.
func merged(cur, want *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	maps.Copy(next.Labels, want.Labels)
	maps.Copy(next.Annotations, want.Annotations)
	next.OwnerReferences, next.Endpoints, next.Ports = want.OwnerReferences, want.Endpoints, want.Ports
	return next
}

func (w *Writer) wrote(s *discoveryv1.EndpointSlice, msg, previous string) {
	w.mu.Lock()
	w.written = s
	w.mu.Unlock()
	if previous != "" {
		w.log.Info(msg, "previous", previous)
	} else {
		w.log.Info(msg)
	}
}

// service reads the Service and refuses one the slice must not be added to.
func (w *Writer) service(ctx context.Context) (*corev1.Service, error) {
	svc, err := w.cfg.Services.Get(ctx, w.cfg.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("Service %s/%s does not exist: create it without a selector", w.cfg.Namespace, w.cfg.Service)
	case err != nil:
		return nil, fmt.Errorf("read Service %s/%s: %w", w.cfg.Namespace, w.cfg.Service, err)
	}
	if err := refuse(svc); err != nil {
		return nil, err
	}
	return svc, nil
}

// refuse says why the slice must not be written for svc, or nil.
func refuse(svc *corev1.Service) error {
	switch {
	case len(svc.Spec.Selector) > 0:
		return fmt.Errorf("Service %s/%s has a selector (%v): the endpointslice controller routes it to the pods it selects, and this pod's EndpointSlice would add one more; not writing it. Remove the selector from the Service, or unset SERVICE_NAME",
			svc.Namespace, svc.Name, metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return fmt.Errorf("Service %s/%s is of type ExternalName, which has no endpoints; not writing the EndpointSlice", svc.Namespace, svc.Name)
	}
	return nil
}

// slice is the slice that names this pod, owned by svc, so that it goes
// when the Service goes.
func (w *Writer) slice(svc *corev1.Service) *discoveryv1.EndpointSlice {
	ep := discoveryv1.Endpoint{
		Addresses: []string{w.ip},
		Conditions: discoveryv1.EndpointConditions{
			Ready: new(true), Serving: new(true), Terminating: new(false),
		},
	}
	if w.cfg.NodeName != "" {
		ep.NodeName = new(w.cfg.NodeName)
	}
	if w.cfg.Pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: w.cfg.PodNamespace, Name: w.cfg.Pod}
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      w.name,
			Namespace: w.cfg.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: w.cfg.Service,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			Annotations: map[string]string{HolderAnnotation: w.cfg.Identity, TermAnnotation: w.currentTerm()},
			// No blockOwnerDeletion: setting it needs the right to update
			// the Service's finalizers.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: new(true)}},
		},
		AddressType: w.addr,
		Endpoints:   []discoveryv1.Endpoint{ep},
		Ports:       slices.Clone(w.ports),
	}
}

func (w *Writer) currentTerm() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.term
}

// namesThisPod reports whether s is this writer's slice, written by this
// holder in this term, and names this pod. An address alone may be another
// pod's: hostNetwork pods on one node share it.
func (w *Writer) namesThisPod(s *discoveryv1.EndpointSlice) bool {
	if s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
		return false
	}
	if h := s.Annotations[HolderAnnotation]; h != "" && h != w.cfg.Identity {
		return false
	}
	if t := s.Annotations[TermAnnotation]; t != "" && t != w.currentTerm() {
		return false
	}
	for _, ep := range s.Endpoints {
		if slices.Contains(ep.Addresses, w.ip) && (ep.TargetRef == nil || w.cfg.Pod == "" || ep.TargetRef.Name == w.cfg.Pod) {
			return true
		}
	}
	return false
}

// withdraw deletes the slice if it names this pod.
func (w *Writer) withdraw(ctx context.Context) error {
	w.mu.Lock()
	last := w.written
	w.mu.Unlock()
	if last != nil {
		// Delete the slice as this pod wrote it, without reading it first:
		// the precondition fails if anyone changed it since.
		err := w.cfg.Slices.Delete(ctx, last.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &last.UID, ResourceVersion: &last.ResourceVersion},
		})
		switch {
		case err == nil:
			w.deleted()
			return nil
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			w.withdrawn() // changed or gone: read it, below
		default:
			return fmt.Errorf("delete EndpointSlice %s/%s: %w", w.cfg.Namespace, last.Name, err)
		}
	}
	cur, err := w.cfg.Slices.Get(ctx, w.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		w.withdrawn()
		return nil
	case err != nil:
		return fmt.Errorf("read EndpointSlice %s/%s to remove this pod: %w", w.cfg.Namespace, w.name, err)
	}
	if !w.namesThisPod(cur) {
		w.withdrawn()
		w.log.Info("the Service's EndpointSlice names another pod already; left alone", "holder", cur.Annotations[HolderAnnotation])
		return nil
	}
	if err := w.delete(ctx, cur); err != nil {
		return err
	}
	w.deleted()
	return nil
}

func (w *Writer) deleted() {
	w.withdrawn()
	w.errs.Note(nil)
	w.log.Info("deleted the Service's EndpointSlice: the Service has no endpoint until the next leader writes its own")
}

func (w *Writer) withdrawn() {
	w.mu.Lock()
	w.written = nil
	w.mu.Unlock()
}

// delete deletes s on the condition that it has not changed since it was
// read. A conflict is returned as such, for the caller to read it again.
func (w *Writer) delete(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	err := w.cfg.Slices.Delete(ctx, s.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete EndpointSlice %s/%s: %w", w.cfg.Namespace, s.Name, err)
	}
	return nil
}

// checkService looks once for what would make the Service name a pod other
// than the leader, and logs it: a selector (then no slice is written, see
// refuse), or an Endpoints object of the Service's name without the
// skip-mirror label, such as the one k8s-await-election wrote: the
// endpointslice mirroring controller mirrors it into a slice of its own,
// which keeps routing to that old leader.
func (w *Writer) checkService(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc, err := w.cfg.Services.Get(ctx, w.cfg.Service, metav1.GetOptions{})
	if err != nil {
		svc = nil // some clients return an empty object with an error
	}
	switch {
	case apierrors.IsNotFound(err):
		w.log.Warn("the Service does not exist (yet); the leader writes its EndpointSlice once it does. Create it without a selector")
	case err != nil:
		w.log.Warn("cannot read the Service to check it", "err", err)
	default:
		if err := refuse(svc); err != nil {
			w.log.Error("the Service cannot be routed by this sidecar", "err", err)
		}
	}
	if w.cfg.Endpoints == nil {
		return
	}
	eps, err := w.cfg.Endpoints.Get(ctx, w.cfg.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		w.log.Warn("cannot check for a leftover Endpoints object of the Service", "err", err)
	case eps.Labels[skipMirrorLabel] == "true":
	case svc != nil && len(svc.Spec.Selector) > 0:
		// The endpoints controller's own, not mirrored for such a Service.
	default:
		w.log.Warn("an Endpoints object of the Service's name exists, perhaps left by k8s-await-election: the endpointslice mirroring controller mirrors it into another EndpointSlice, so the Service also routes to the addresses it lists. Delete it: kubectl delete endpoints -n "+w.cfg.Namespace+" "+w.cfg.Service,
			"endpoints", w.cfg.Namespace+"/"+eps.Name, "addresses", addresses(eps))
	}
}

// addresses lists the IPs of an Endpoints object.
func addresses(eps *corev1.Endpoints) []string {
	var out []string
	for _, s := range eps.Subsets {
		for _, a := range s.Addresses {
			out = append(out, a.IP)
		}
	}
	return out
}
