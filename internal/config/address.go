package config

import (
	"net"
	"net/netip"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation"
)

// addressRule checks a listen address of the form host:port: the host empty
// (every address), an IP or a DNS name such as localhost; the port a decimal
// number from 1 to 65535 (0, a random port, is of no use to a probe or a
// client). It returns the broken rule, or "" when the address is valid.
func addressRule(addr string) string {
	const rule = "must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535"
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return rule
	}
	if n, ok := decimalPort(port); !ok || n < 1 || n > 65535 {
		return rule
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return rule + "; the host must be an IP address or a DNS name"
	}
	return ""
}

// samePort says whether addr listens where :port does: on every address
// (host empty, 0.0.0.0 or ::) and on that port. addr must be valid.
func samePort(addr string, port int) bool {
	host, p, _ := net.SplitHostPort(addr)
	n, _ := decimalPort(p)
	switch host {
	case "", "0.0.0.0", "::":
		return n == port
	}
	return false
}

// decimalPort reads a port of decimal digits only, as HEALTH_PORT is read:
// no sign, no 0x, no service name.
func decimalPort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
