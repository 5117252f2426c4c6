package contract

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
)

// The control relay carries the control plane to the routers of the
// managers paasd does not run on. paasd listens on ControlSocket only on
// its own node; there the router uses it. Elsewhere the router finds
// nothing there and connects to ControlRelaySocket instead, where the
// ports process of its node listens and copies each connection's bytes,
// unchanged, to paasd's relay address (a ControlRelay document, a Swarm
// config of role RoleControlRelay) over TLS: paasd's certificate names
// RelayServerName, the relay's names RelayClientName, both signed by a
// CA of their own that paasd keeps, and the relay's certificate and key,
// with that CA, reach the ports processes as the Swarm secret at
// ControlRelaySecretPath (a RelayBundle). paasd accepts no connection on
// that address without the relay's certificate, and trusts the
// X-Forwarded-For the router wrote, as it does on its socket.

// ControlRelaySocket is the unix socket, in the router's sockets directory,
// the ports process relays to the control plane from.
const ControlRelaySocket = "control-relay.sock"

// RoleControlRelay labels the config object that says where paasd's
// relay listener is.
const RoleControlRelay = "control-relay"

// ControlRelaySecretPath is where the ports process finds the relay's
// RelayBundle.
const ControlRelaySecretPath = "/run/secrets/paas-control-relay"

// The names the relay's certificates carry.
const (
	RelayServerName = "control-relay.paas.invalid"
	RelayClientName = "paas control relay"
)

// ControlRelay is the document of a RoleControlRelay config.
type ControlRelay struct {
	// Addr is HOST:PORT of paasd's relay listener.
	Addr string `json:"addr"`
}

// ParseControlRelay reads a ControlRelay document.
func ParseControlRelay(data []byte) (ControlRelay, error) {
	var c ControlRelay
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("decode the control relay document: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, fmt.Errorf("control relay address %q: %w", c.Addr, err)
	}
	return c, nil
}

// RelayBundle is what the ports process needs to reach paasd: the relay's
// certificate and key, and the CA paasd's certificate is signed by (PEM).
type RelayBundle struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// ClientTLS is the relay's TLS configuration for connecting to paasd: it
// presents the relay's certificate and trusts only paasd's, as signed by
// the bundle's CA for RelayServerName.
func (b RelayBundle) ClientTLS() (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(b.Cert), []byte(b.Key))
	if err != nil {
		return nil, fmt.Errorf("the control relay's certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b.CA)) {
		return nil, errors.New("the control relay's bundle has no CA")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   RelayServerName,
	}, nil
}

// ParseRelayBundle reads a RelayBundle (JSON).
func ParseRelayBundle(data []byte) (RelayBundle, error) {
	var b RelayBundle
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("decode the control relay's bundle: %w", err)
	}
	return b, nil
}

// IsRelayClient reports whether a TLS connection's peer presented the
// relay's certificate, verified against the relay's CA (the server's
// ClientCAs): the one peer whose X-Forwarded-For paasd believes.
func IsRelayClient(cs *tls.ConnectionState) bool {
	return cs != nil && len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 &&
		cs.VerifiedChains[0][0].Subject.CommonName == RelayClientName
}
