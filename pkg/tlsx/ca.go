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

// CA is a certificate authority (ECDSA P-256) that issues the certificates
// of Veltrix identities: service certificates (URI SAN ServiceURI) and
// principals' certificates (URI SAN PrincipalURI). WriteDevPKI and the e2e
// tests make their certificates with it.
type CA struct {
	// Cert is the CA certificate and CertPEM its PEM encoding.
	Cert    *x509.Certificate
	CertPEM []byte
	// CertFile is the file CertPEM was loaded from or written to, the
	// CAFile of the Files Issue returns; "" until then.
	CertFile string

	key crypto.Signer
}

// Leaf says what a certificate Issue makes names and may be used for.
type Leaf struct {
	// Name is the subject Common Name (which names no service: only Role
	// does).
	Name string
	// Role, when set, makes a service certificate: URI SAN ServiceURI(Role).
	Role Role
	// Principal, when set, makes a principal's certificate: URI SAN
	// PrincipalURI(Principal). At most one of Role and Principal is set.
	Principal string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for, as DNS and IP SANs.
	Hosts []string
	// Server and Client add the server and client auth extended key
	// usages.
	Server, Client bool
	// NotBefore and NotAfter bound the certificate's validity. Default: an
	// hour ago (for clock skew) and a day from now.
	NotBefore, NotAfter time.Time
}

// Issued is a certificate Issue made and the files it wrote.
type Issued struct {
	// Files are the certificate's and key's files, and the issuing CA's
	// CertFile.
	Files
	// Cert is the certificate; CertPEM and KeyPEM are the files' content.
	Cert            *x509.Certificate
	CertPEM, KeyPEM []byte
}

// NewCA makes a self-signed CA of subject, valid from an hour ago (for
// clock skew) until validity from now. The certificates it issues carry its subject's
// Organization.
func NewCA(subject pkix.Name, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsx: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               subject,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	now := time.Now()
	cert, certPEM, err := sign(tmpl, nil, key, key, now.Add(-time.Hour), now.Add(validity))
	if err != nil {
		return nil, fmt.Errorf("tlsx: CA %q: %w", subject.CommonName, err)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// LoadCA reads a CA's certificate and key, as Write wrote them.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cert, key, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsx: CA: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("tlsx: CA %s: not a CA certificate", certFile)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return &CA{Cert: cert, CertPEM: certPEM, CertFile: certFile, key: key}, nil
}

// Write writes the CA's certificate to certFile and its key to keyFile
// (mode 0600), each through a rename so a reader never sees half a file.
func (ca *CA) Write(certFile, keyFile string) error {
	kder, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("tlsx: CA key: %w", err)
	}
	if err := WriteFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	if err := WriteFileAtomic(certFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	ca.CertFile = certFile
	return nil
}

// Issue makes a certificate of l with a new key (ECDSA P-256), signed by
// the CA, and writes it to certFile and the key to keyFile (mode 0600),
// each through a rename.
func (ca *CA) Issue(certFile, keyFile string, l Leaf) (Issued, error) {
	out := Issued{Files: Files{CertFile: certFile, KeyFile: keyFile, CAFile: ca.CertFile}}
	if l.Role != "" && l.Principal != "" {
		return out, fmt.Errorf("tlsx: issue %s: names service %s and principal %q; a certificate names one identity", certFile, l.Role, l.Principal)
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = time.Now().Add(24 * time.Hour)
	}
	dns, ips := splitHosts(l.Hosts)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: l.Name, Organization: ca.Cert.Subject.Organization},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	switch {
	case l.Role != "":
		tmpl.URIs = []*url.URL{ServiceURI(l.Role)}
	case l.Principal != "":
		tmpl.URIs = []*url.URL{PrincipalURI(l.Principal)}
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return out, fmt.Errorf("tlsx: key for %s: %w", certFile, err)
	}
	if out.Cert, out.CertPEM, err = sign(tmpl, ca.Cert, ca.key, key, l.NotBefore, l.NotAfter); err != nil {
		return out, fmt.Errorf("tlsx: issue %s: %w", certFile, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return out, fmt.Errorf("tlsx: key for %s: %w", certFile, err)
	}
	out.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := WriteFileAtomic(keyFile, out.KeyPEM, 0o600); err != nil {
		return out, err
	}
	return out, WriteFileAtomic(certFile, out.CertPEM, 0o644)
}

// sign signs tmpl for key's public key by signer with parent (self-signed
// when nil), valid from notBefore to notAfter.
func sign(tmpl, parent *x509.Certificate, signer crypto.Signer, key *ecdsa.PrivateKey, notBefore, notAfter time.Time) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// splitHosts splits hosts into DNS names and IP addresses, without
// repeats or empty names, in their order.
func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return dns, ips
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

// WriteFileAtomic writes data to path with mode through a temporary file
// in the same directory and a rename, as cert-manager's kubelet projection
// does, so a reader never sees half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
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
