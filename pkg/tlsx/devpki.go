package tlsx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Lifetimes of the dev PKI's certificates. A certificate with less than
// devRenewBefore left is issued again.
const (
	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 365 * 24 * time.Hour
	devRenewBefore  = 30 * 24 * time.Hour
)

// DevAdmin is the principal of the dev PKI's client certificate.
const DevAdmin = "admin"

// DevPKI are the files WriteDevPKI wrote.
type DevPKI struct {
	// Dir is the directory holding them.
	Dir string
	// CA and CAKey are the CA's certificate and key (ca.pem, ca-key.pem).
	CA, CAKey string
	// Router, Storage and Migrator are the service certificates.
	Router, Storage, Migrator Files
	// Admin is the client certificate of principal DevAdmin.
	Admin Files
}

// Service returns the files of role r's certificate.
func (p DevPKI) Service(r Role) Files {
	switch r {
	case RoleRouter:
		return p.Router
	case RoleStorage:
		return p.Storage
	case RoleMigrator:
		return p.Migrator
	}
	return Files{}
}

// WriteDevPKI writes a local CA (ECDSA P-256) and the certificates of a
// dev cluster to dir: router, storage and migrator service certificates
// (URI SAN ServiceURI, DNS and IP SANs from hosts plus localhost, 127.0.0.1
// and ::1, server and client auth) and a client certificate of principal
// "admin" (PrincipalURI). Files: ca.pem, ca-key.pem, <name>.pem,
// <name>-key.pem, keys mode 0600. It is idempotent: an existing CA valid for
// 30 more days is kept, and so are leaves it signed that are valid as long
// and name the hosts; anything else is written again.
func WriteDevPKI(dir string, hosts []string) (DevPKI, error) {
	p := DevPKI{Dir: dir, CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("tlsx: dev PKI: %w", err)
	}
	var dns []string
	var ips []net.IP
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	ca, caKey, err := loadPair(p.CA, p.CAKey)
	now := time.Now()
	if err != nil || !ca.IsCA || now.Add(devRenewBefore).After(ca.NotAfter) {
		if ca, caKey, err = writeCA(p.CA, p.CAKey, now); err != nil {
			return p, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaves := []struct {
		name string
		uri  *url.URL
		dst  *Files
		dns  []string
		ips  []net.IP
	}{
		{string(RoleRouter), ServiceURI(RoleRouter), &p.Router, dns, ips},
		{string(RoleStorage), ServiceURI(RoleStorage), &p.Storage, dns, ips},
		{string(RoleMigrator), ServiceURI(RoleMigrator), &p.Migrator, dns, ips},
		{DevAdmin, PrincipalURI(DevAdmin), &p.Admin, nil, nil},
	}
	for _, l := range leaves {
		*l.dst = Files{CertFile: filepath.Join(dir, l.name+".pem"), KeyFile: filepath.Join(dir, l.name+"-key.pem"), CAFile: p.CA}
		if leafValid(*l.dst, pool, l.dns, l.ips, now) {
			continue
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: l.name, Organization: []string{"Veltrix dev"}},
			URIs:        []*url.URL{l.uri},
			DNSNames:    l.dns,
			IPAddresses: l.ips,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		if err := writeCert(*l.dst, tmpl, ca, caKey, now, devLeafLifetime); err != nil {
			return p, err
		}
	}
	return p, nil
}

// loadPair reads a certificate and its key.
func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	pair, err := parsePair(cb, kb, namesFor(""), Files{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		return nil, nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("key cannot sign")
	}
	return pair.Leaf, signer, nil
}

// leafValid reports whether f holds a certificate signed by pool's CA,
// valid for devRenewBefore more, naming the hosts, with its key.
func leafValid(f Files, pool *x509.CertPool, dns []string, ips []net.IP, now time.Time) bool {
	leaf, _, err := loadPair(f.CertFile, f.KeyFile)
	if err != nil || now.Add(devRenewBefore).After(leaf.NotAfter) {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return false
	}
	for _, d := range dns {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func writeCA(certFile, keyFile string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsx: dev CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Veltrix dev CA", Organization: []string{"Veltrix dev"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	f := Files{CertFile: certFile, KeyFile: keyFile}
	if err := writeSigned(f, tmpl, nil, key, key, now, devCALifetime); err != nil {
		return nil, nil, err
	}
	ca, _, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsx: dev CA: %w", err)
	}
	return ca, key, nil
}

func writeCert(f Files, tmpl, ca *x509.Certificate, caKey crypto.Signer, now time.Time, life time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tlsx: key for %s: %w", f.CertFile, err)
	}
	return writeSigned(f, tmpl, ca, caKey, key, now, life)
}

// writeSigned issues tmpl for key, signed by parent (self-signed when
// nil) and writes it and the key, each through a rename so a reader never
// sees half a file.
func writeSigned(f Files, tmpl, parent *x509.Certificate, signer crypto.Signer, key *ecdsa.PrivateKey, now time.Time, life time.Duration) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(life)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return fmt.Errorf("tlsx: issue %s: %w", f.CertFile, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(f.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsx: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("tlsx: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("tlsx: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlsx: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlsx: write %s: %w", path, err)
	}
	return nil
}
