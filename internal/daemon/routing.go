package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/docker/docker/client"

	"paas/internal/routing"
	"paas/internal/store"
)

// newRouting builds the control plane's side of the router: route
// configuration published as Swarm configs, and the ACME client.
func newRouting(docker client.APIClient, st *store.Store, cfg Config, dataDir string, certKey []byte, refresh func(context.Context) error, log *slog.Logger) (*routing.Service, error) {
	var roots *x509.CertPool
	if cfg.ACMECAFile != "" {
		pemData, err := os.ReadFile(cfg.ACMECAFile)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-file: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("--acme-ca-file %s: no PEM certificate in it", cfg.ACMECAFile)
		}
	}
	return routing.New(docker, st, routing.Options{
		Installation: cfg.Name,
		Domain:       cfg.Domain,
		HTTPPort:     cfg.HTTPPort,
		HTTPSPort:    cfg.HTTPSPort,
		DataDir:      dataDir,
		CertKey:      certKey,
		ACME:         routing.ACMEOptions{DirectoryURL: cfg.ACMEDirectory, Roots: roots, Email: cfg.ACMEEmail, RenewBefore: cfg.ACMERenewBefore},
		Refresh:      refresh,
		ControlCert:  controlCert(filepath.Join(dataDir, WebTLSDir)),
		Log:          log,
	}), nil
}
