package contract_test

import (
	"strings"
	"testing"

	"paas/router/contract"
)

func TestSealCertKey(t *testing.T) {
	key := contract.CertKey("secret text")
	pem := "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
	sealed, err := contract.SealCertKey(key, pem)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "PRIVATE KEY") || strings.Contains(sealed, "MIIB") {
		t.Fatalf("sealed key shows the PEM: %s", sealed)
	}
	again, _ := contract.SealCertKey(key, pem)
	if again != sealed {
		t.Fatal("the same key seals differently: its config object would be replaced on every publish")
	}
	if got, err := contract.OpenCertKey(key, sealed); err != nil || got != pem {
		t.Fatalf("OpenCertKey = %q, %v", got, err)
	}
	if _, err := contract.OpenCertKey(contract.CertKey("other"), sealed); err == nil {
		t.Fatal("another key opened the sealed key")
	}
	if _, err := contract.OpenCertKey(nil, sealed); err == nil {
		t.Fatal("no key opened the sealed key")
	}
	if got, err := contract.OpenCertKey(nil, pem); err != nil || got != pem {
		t.Fatalf("a plain PEM key: %q, %v", got, err)
	}
}
