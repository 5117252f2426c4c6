package contract

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// A certificate's private key travels to the routers sealed (AES-256-GCM,
// Go's crypto/aes and crypto/cipher) inside the route config object, which
// anyone with `docker config inspect` reads. The key that opens it reaches
// the routers as a Swarm secret (CertKeySecretPath), which no Docker API
// call returns: config objects stay what the routers follow (a certificate
// added or renewed needs no router restart), and no inspect shows a key.

// CertKeySecretPath is where the router's tasks find the secret the cert
// key is derived from.
const CertKeySecretPath = "/run/secrets/paas-router-cert-key"

// sealedKeyPrefix starts a sealed private key; a PEM key starts "-----".
const sealedKeyPrefix = "paas-sealed-v1:"

// CertKey derives the AES-256 key from the secret's text.
func CertKey(secret string) []byte {
	sum := sha256.Sum256([]byte("paas router cert key\x00" + strings.TrimSpace(secret)))
	return sum[:]
}

func certAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealCertKey returns keyPEM sealed under key. The nonce is an HMAC of the
// key PEM (a synthetic IV): the same key seals the same way, so a config
// object, named after its content, is not replaced when nothing changed;
// two different keys never share a nonce.
func SealCertKey(key []byte, keyPEM string) (string, error) {
	aead, err := certAEAD(key)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(keyPEM))
	nonce := mac.Sum(nil)[:aead.NonceSize()]
	return sealedKeyPrefix + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(keyPEM), nil)), nil
}

// OpenCertKey returns the PEM key of a sealed one; a PEM key (from a
// control plane before sealing) is returned as it is.
func OpenCertKey(key []byte, s string) (string, error) {
	rest, ok := strings.CutPrefix(s, sealedKeyPrefix)
	if !ok {
		return s, nil
	}
	if key == nil {
		return "", errors.New("certificate key is sealed and this router has no cert key secret")
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("sealed certificate key: %w", err)
	}
	aead, err := certAEAD(key)
	if err != nil {
		return "", err
	}
	if len(raw) < aead.NonceSize() {
		return "", errors.New("sealed certificate key is truncated")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
	if err != nil {
		return "", fmt.Errorf("open sealed certificate key (another installation's cert key?): %w", err)
	}
	return string(plain), nil
}
