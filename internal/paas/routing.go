package paas

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors of the routing commands.
var (
	ErrInvalidDomain = errors.New("invalid domain")
	ErrDomainTaken   = errors.New("domain already used by another app")
	ErrInvalidCert   = errors.New("invalid certificate")
)

// Routing is how the router serves an app beyond its default APP.DOMAIN:
// custom domains, certificates, port mapping and limits.
type Routing struct {
	// Domains are canonical exact names and one-label wildcards ("*.x.y").
	Domains []string `json:"domains,omitempty"`
	// DomainsDisabled (domains:disable) serves the app at none of its
	// names, APP.DOMAIN included; its domains are kept for domains:enable.
	DomainsDisabled bool `json:"domains_disabled,omitempty"`
	// Ports map the router's ports to the app's container port (ports:set).
	Ports []PortMap `json:"ports,omitempty"`
	// Cert is an uploaded certificate (certs:add).
	Cert *Cert `json:"cert,omitempty"`
	// LetsEncrypt asks for ACME certificates for the app's names.
	LetsEncrypt bool `json:"letsencrypt,omitempty"`
	// ACMECert is the certificate ACME issued last.
	ACMECert *Cert `json:"acme_cert,omitempty"`
	// MaxBodyBytes limits request bodies; 0 is no limit.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// ReadTimeout bounds the wait for response headers; 0 is no limit.
	ReadTimeout time.Duration `json:"read_timeout,omitempty"`
}

// Cert is a certificate chain with its key, and what a report shows of it.
// KeyPEM is never printed.
type Cert struct {
	CertPEM   string    `json:"cert_pem"`
	KeyPEM    string    `json:"key_pem"`
	Names     []string  `json:"names"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	AddedAt   time.Time `json:"added_at"`
}

// PortMap is one SCHEME:HOST-PORT:CONTAINER-PORT mapping.
type PortMap struct {
	Scheme        string `json:"scheme"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
}

func (p PortMap) String() string {
	return fmt.Sprintf("%s:%d:%d", p.Scheme, p.HostPort, p.ContainerPort)
}

// ParsePortMap reads "http:80:5000".
func ParsePortMap(s string) (PortMap, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return PortMap{}, fmt.Errorf("invalid port mapping %q: use SCHEME:HOST-PORT:CONTAINER-PORT, e.g. http:80:5000", s)
	}
	if parts[0] != "http" && parts[0] != "https" {
		return PortMap{}, fmt.Errorf("invalid port mapping %q: the scheme is http or https", s)
	}
	var ports [2]int
	for i, v := range parts[1:] {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return PortMap{}, fmt.Errorf("invalid port mapping %q: %q is not a port", s, v)
		}
		ports[i] = n
	}
	return PortMap{Scheme: parts[0], HostPort: ports[0], ContainerPort: ports[1]}, nil
}

// CanonicalDomain lower-cases name and drops one trailing dot.
func CanonicalDomain(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// ValidateDomain reports whether name (canonical) is a DNS name an app may be
// served at: labels of letters, digits and inner dashes, at most 63
// characters each, 253 in all, at least two labels, a last label that is not
// all digits (no IP addresses); or "*." followed by such a name of at least
// two labels.
func ValidateDomain(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidDomain, name, why) }
	if name == "" {
		return bad("empty")
	}
	host, wildcard := strings.CutPrefix(name, "*.")
	if len(host) > 253 {
		return bad("longer than 253 characters")
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return bad("use a fully qualified name, e.g. app.example.com")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("each label is 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("a label neither starts nor ends with a dash")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c == '*' && !wildcard {
					return bad("a wildcard is only allowed as the whole first label, e.g. *.example.com")
				}
				return bad("use letters, digits, dashes and dots")
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return bad("an IP address is not a domain")
	}
	return nil
}
