package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
	"paas/internal/registry"
	"paas/router/contract"
)

// The control relay (contract.ControlRelaySocket): paasd serves its HTTP
// server on a TCP address too, for the routers of the managers it does not
// run on, through their ports processes. Only TLS connections that present
// the relay's certificate get in.

// RelayTLSDir is where, under the data dir, the relay's CA (a CA of its
// own: it signs nothing else), paasd's certificate and the relay's
// certificate are kept.
const RelayTLSDir = "control-relay-tls"

// DefaultControlPort is the port of paasd's relay listener unless
// --control-addr says otherwise.
const DefaultControlPort = 7443

// ControlAddrOff is the --control-addr that turns the relay off.
const ControlAddrOff = "off"

// validControlAddr checks --control-addr: empty, ControlAddrOff or
// HOST:PORT.
func validControlAddr(addr string) error {
	if addr == "" || addr == ControlAddrOff {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--control-addr %q: use HOST:PORT or %s: %w", addr, ControlAddrOff, err)
	}
	return nil
}

// relayListener is paasd's relay listener and what the ports processes
// need to reach it.
type relayListener struct {
	ln net.Listener // TLS, the relay's certificate required
	// addr is where the other managers reach it (published in the Swarm).
	addr string
	// bundle is the contract.RelayBundle the ports processes get as a
	// Swarm secret.
	bundle string
}

// relayCerts loads (or makes) the relay's certificates in dir: paasd's
// server configuration, which accepts only the relay's certificate, and
// the bundle the relay connects with.
func relayCerts(dir string) (*tls.Config, string, error) {
	srv, err := registry.LoadCertificates(dir, []string{contract.RelayServerName})
	if err != nil {
		return nil, "", fmt.Errorf("the control relay's certificates: %w", err)
	}
	if _, _, err := registry.LoadClientCertificate(dir, "client", contract.RelayClientName); err != nil {
		return nil, "", fmt.Errorf("the control relay's certificates: %w", err)
	}
	crt, err := os.ReadFile(filepath.Join(dir, "client.crt"))
	if err != nil {
		return nil, "", err
	}
	key, err := os.ReadFile(filepath.Join(dir, "client.key"))
	if err != nil {
		return nil, "", err
	}
	bundle, err := json.Marshal(contract.RelayBundle{Cert: string(crt), Key: string(key), CA: string(srv.CA)})
	if err != nil {
		return nil, "", err
	}
	return relayServerTLS(srv.Server, srv.CA), string(bundle), nil
}

// relayServerTLS accepts a connection only with a certificate the CA signed
// for the relay (contract.IsRelayClient).
func relayServerTLS(cert tls.Certificate, caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if !contract.IsRelayClient(&cs) {
				return errors.New("not the control relay's certificate")
			}
			return nil
		},
	}
}

// listenRelay listens on cfg.ControlAddr (default: the node's Swarm
// address, DefaultControlPort) with the relay's TLS; nil when the operator
// turned it off. A listener of the default address that cannot be made is
// logged and left out (paas.DOMAIN then answers on paasd's node only); one
// the operator asked for is an error.
func listenRelay(ctx context.Context, cfg Config, dataDir string, nodeAddr func(context.Context) (string, error), log *slog.Logger) (*relayListener, error) {
	if cfg.ControlAddr == ControlAddrOff {
		return nil, nil
	}
	tlsCfg, bundle, err := relayCerts(filepath.Join(dataDir, RelayTLSDir))
	if err != nil {
		return nil, err
	}
	listen := cfg.ControlAddr
	host := ""
	if listen == "" {
		if host, err = nodeAddr(ctx); err != nil || host == "" {
			log.Warn("no Swarm address of this node: the routers of other managers answer 502 for the control plane", "err", err)
			return nil, nil
		}
		listen = net.JoinHostPort(host, strconv.Itoa(DefaultControlPort))
	} else if host, _, err = net.SplitHostPort(listen); err != nil {
		return nil, fmt.Errorf("--control-addr %q: %w", listen, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		if cfg.ControlAddr == "" {
			log.Warn("cannot listen for the routers of other managers (set --control-addr): they answer 502 for the control plane", "addr", listen, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("--control-addr: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = nodeAddr(ctx); err != nil || host == "" {
			ln.Close()
			return nil, fmt.Errorf("--control-addr %s: no Swarm address of this node to advertise (%v); name the address", listen, err)
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return &relayListener{
		ln:     tls.NewListener(ln, tlsCfg),
		addr:   net.JoinHostPort(host, strconv.Itoa(port)),
		bundle: bundle,
	}, nil
}

// relayConfigs is the part of the Docker API that publishes the relay's
// address.
type relayConfigs interface {
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
	ConfigCreate(ctx context.Context, config swarm.ConfigSpec) (swarm.ConfigCreateResponse, error)
	ConfigRemove(ctx context.Context, id string) error
}

// publishRelay says in the Swarm where the relay listener is
// (contract.ControlRelay), replacing what an earlier paasd said.
func publishRelay(ctx context.Context, api relayConfigs, installation, addr string) error {
	data, err := json.Marshal(contract.ControlRelay{Addr: addr})
	if err != nil {
		return err
	}
	name := contract.ConfigName(installation, contract.RoleControlRelay, "", data)
	old, err := api.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+installation),
		filters.Arg("label", paas.LabelRole+"="+contract.RoleControlRelay),
	)})
	if err != nil {
		return fmt.Errorf("publish the control relay address: %w", err)
	}
	have := false
	for _, c := range old {
		have = have || c.Spec.Name == name
	}
	if !have {
		_, err := api.ConfigCreate(ctx, swarm.ConfigSpec{
			Annotations: swarm.Annotations{Name: name, Labels: contract.ConfigLabels(installation, contract.RoleControlRelay, "")},
			Data:        data,
		})
		if err != nil {
			return fmt.Errorf("publish the control relay address: %w", err)
		}
	}
	for _, c := range old {
		if c.Spec.Name != name {
			if err := api.ConfigRemove(ctx, c.ID); err != nil {
				return fmt.Errorf("remove the old control relay address: %w", err)
			}
		}
	}
	return nil
}
