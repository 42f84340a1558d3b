package config

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseServicePorts reads SERVICE_PORTS: a JSON list of core/v1
// EndpointPort ({name, port, protocol, appProtocol}), the format of
// k8s-await-election's K8S_AWAIT_ELECTION_SERVICE_PORTS_JSON. It applies the
// API's defaults (protocol TCP, name "") and checks what the API server
// would refuse in an EndpointSlice, so that a bad value stops the sidecar at
// start instead of failing every leader term.
func ParseServicePorts(s string) ([]discoveryv1.EndpointPort, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields() // a misspelt "prot" is a mistake, not a default
	var ports []discoveryv1.EndpointPort
	if err := dec.Decode(&ports); err != nil {
		return nil, fmt.Errorf(`must be a JSON list such as [{"name":"http","port":8080,"protocol":"TCP"}]: %w`, err)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return nil, fmt.Errorf(`must be one JSON list such as [{"name":"http","port":8080}], and nothing after it`)
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("must list at least one port")
	}
	seen := map[string]bool{}
	for i, p := range ports {
		at := fmt.Sprintf("port %d", i+1)
		if p.Name == nil {
			p.Name = new(string)
		}
		if p.Protocol == nil {
			p.Protocol = new(corev1.ProtocolTCP)
		}
		if *p.Name != "" {
			at = fmt.Sprintf("port %q", *p.Name)
			if msgs := validation.IsDNS1123Label(*p.Name); len(msgs) > 0 {
				return nil, fmt.Errorf("%s: name must be a valid port name: %s", at, strings.Join(msgs, "; "))
			}
		}
		if seen[*p.Name] {
			return nil, fmt.Errorf("%s: names must be unique; with several ports, name each", at)
		}
		seen[*p.Name] = true
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			return nil, fmt.Errorf("%s: port must be a number from 1 to 65535", at)
		}
		switch *p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			return nil, fmt.Errorf("%s: protocol must be TCP, UDP or SCTP", at)
		}
		if p.AppProtocol != nil {
			if msgs := validation.IsQualifiedName(*p.AppProtocol); len(msgs) > 0 {
				return nil, fmt.Errorf("%s: appProtocol must be a qualified name such as http or kubernetes.io/h2c: %s", at, strings.Join(msgs, "; "))
			}
		}
		ports[i] = p
	}
	return ports, nil
}

// ParsePodIP reads POD_IP as the address of an EndpointSlice: an IPv4 or
// IPv6 address in canonical form that the API server accepts as an endpoint
// (not unspecified, loopback or link-local).
func ParsePodIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("must be an IP address")
	case ip.Zone() != "":
		return netip.Addr{}, fmt.Errorf("must be an IP address without a zone")
	case ip.Unmap().String() != s:
		return netip.Addr{}, fmt.Errorf("must be an IP address in canonical form, %s", ip.Unmap())
	case ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return netip.Addr{}, fmt.Errorf("must not be unspecified, loopback or link-local: the API server refuses it as an endpoint")
	}
	return ip, nil
}

// resolveService checks the EndpointSlice writer's variables, which matter
// only with SERVICE_NAME set.
func (c *Config) resolveService(p *problems) {
	bad := p.bad
	if c.ServiceName == "" {
		// POD_IP also gives the take-over offer's address (written into the Lease):
		// a malformed one must not reach it. Loopback is fine there (a
		// replica outside a cluster), unlike in an EndpointSlice.
		if c.PodIP != "" {
			if _, err := netip.ParseAddr(c.PodIP); err != nil {
				bad("POD_IP", c.PodIP, "must be an IP address (the address the leader sends this replica a take-over offer at)")
			}
		}
		return
	}
	// A Service's name is an RFC 1035 label, at most 63 characters, so the
	// slice's name, the Service's plus a suffix, is always a valid name.
	if msgs := validation.IsDNS1035Label(c.ServiceName); len(msgs) > 0 {
		bad("SERVICE_NAME", c.ServiceName, "must be a valid Service name: "+strings.Join(msgs, "; "))
	}
	if c.ServiceNamespace == "" {
		c.ServiceNamespace = c.Namespace
	} else if msgs := validation.IsDNS1123Label(c.ServiceNamespace); len(msgs) > 0 {
		bad("SERVICE_NAMESPACE", c.ServiceNamespace, "must be a valid namespace name: "+strings.Join(msgs, "; "))
	}
	if _, set := p.lookup("SERVICE_PORTS"); !set {
		p.add(fmt.Errorf("SERVICE_PORTS is required when SERVICE_NAME is set: the endpoint's ports, such as [{\"name\":\"http\",\"port\":8080}]"))
	} else if ports, err := ParseServicePorts(c.ServicePorts); err != nil {
		bad("SERVICE_PORTS", c.ServicePorts, err.Error())
	} else {
		c.Ports = ports
	}
	if c.PodIP == "" {
		p.add(fmt.Errorf("POD_IP is required when SERVICE_NAME is set: set it from the Downward API (fieldRef status.podIP)"))
	} else if _, err := ParsePodIP(c.PodIP); err != nil {
		bad("POD_IP", c.PodIP, err.Error())
	}
	if c.NodeName != "" {
		if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
			bad("NODE_NAME", c.NodeName, "must be a valid node name: "+strings.Join(msgs, "; "))
		}
	}
}
