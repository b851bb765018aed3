package framework

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
)

// A test PKI made with pkg/tlsx's CA in the test's temporary directory: a CA,
// service certificates (URI SAN veltrix://service/<role>, IP SAN 127.0.0.1)
// and principal client certificates (veltrix://principal/<name>), as the
// security contract (issue #19) names identities. It also makes what a
// secured cluster must refuse: a certificate of another CA, a certificate
// that names no service, and files that are not certificates.

// CA is a certificate authority of a test: a tlsx.CA (the one issuing
// mechanism, which `veltrix dev` uses too) and helpers that issue what the
// e2e tests need.
type CA struct{ *tlsx.CA }

// CertFiles is a certificate the CA issued: its files, the parsed
// certificate and the files' PEM content. The zero CertFiles is no
// certificate.
type CertFiles = tlsx.Issued

// NewCA makes a CA named name and writes its certificate to dir/name.pem.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	ca, err := tlsx.NewCA(pkix.Name{CommonName: name, Organization: []string{"veltrix e2e"}}, 24*time.Hour)
	if err != nil {
		t.Fatalf("framework: %v", err)
	}
	ca.CertFile = filepath.Join(dir, name+".pem")
	WriteFileAtomic(t, ca.CertFile, ca.CertPEM)
	return &CA{ca}
}

// issue signs the certificate l and writes it to dir/name.crt and
// dir/name.key.
func (ca *CA) issue(t testing.TB, dir, name string, l tlsx.Leaf) CertFiles {
	t.Helper()
	f, err := ca.Issue(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), l)
	if err != nil {
		t.Fatalf("framework: %v", err)
	}
	return f
}

// ServiceCert issues the certificate of a Veltrix service of role r:
// URI SAN veltrix://service/<r>, IP SAN 127.0.0.1, DNS SAN localhost,
// usable as server and client certificate (a service presents it on its
// listeners and on its own dials).
func (ca *CA) ServiceCert(t testing.TB, dir string, r tlsx.Role) CertFiles {
	t.Helper()
	return ca.issue(t, dir, string(r), tlsx.Leaf{
		Name: "veltrix-" + string(r), Role: r,
		Hosts:  []string{"127.0.0.1", "localhost"},
		Server: true, Client: true,
	})
}

// PrincipalCert issues a client certificate of principal name (URI SAN
// veltrix://principal/<name>).
func (ca *CA) PrincipalCert(t testing.TB, dir, name string) CertFiles {
	t.Helper()
	return ca.issue(t, dir, "principal-"+name, tlsx.Leaf{Name: name, Principal: name, Client: true})
}

// NonServiceCert issues a certificate of this CA valid for 127.0.0.1 as
// server and client that names no Veltrix service: no veltrix:// URI, CN
// "veltrix-router" (a Common Name must not make a service).
func (ca *CA) NonServiceCert(t testing.TB, dir string) CertFiles {
	t.Helper()
	return ca.issue(t, dir, "non-service", tlsx.Leaf{
		Name:   "veltrix-router",
		Hosts:  []string{"127.0.0.1"},
		Server: true, Client: true,
	})
}

// Malformed are files a service must refuse to start with.
type Malformed struct {
	// NotPEM is text with no PEM block.
	NotPEM string
	// BadDER is a CERTIFICATE block whose bytes are not a certificate.
	BadDER string
	// Empty is an empty file.
	Empty string
	// Missing does not exist.
	Missing string
}

// WriteMalformed writes the malformed files into dir.
func WriteMalformed(t testing.TB, dir string) Malformed {
	t.Helper()
	m := Malformed{
		NotPEM:  filepath.Join(dir, "not-pem.crt"),
		BadDER:  filepath.Join(dir, "bad-der.crt"),
		Empty:   filepath.Join(dir, "empty.crt"),
		Missing: filepath.Join(dir, "missing.crt"),
	}
	WriteFileAtomic(t, m.NotPEM, []byte("this is not a certificate\n"))
	WriteFileAtomic(t, m.BadDER, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage, not DER")}))
	WriteFileAtomic(t, m.Empty, nil)
	return m
}

// PKI is a secured cluster's certificates (Options.TLS).
type PKI struct {
	// Dir holds every file.
	Dir string
	// CA signs every certificate below. CAFile is the bundle every process
	// gets as --tls-ca-file: a copy of CA.File a rotation test may
	// overwrite with old and new CAs.
	CA     *CA
	CAFile string
	// Services are the certificates of the services, one per role: every
	// process of a role uses the same files (overwrite them to rotate).
	Services map[tlsx.Role]CertFiles
	// Admin is the client certificate of principal "admin", the cluster's
	// --auth-admins bootstrap superuser.
	Admin CertFiles
	// AuthKeyFile is the routers' --auth-key-file (32 random bytes, hex).
	AuthKeyFile string
}

// AdminPrincipal is the principal of PKI.Admin, listed in --auth-admins.
const AdminPrincipal = "admin"

// NewPKI makes a cluster's PKI under dir.
func NewPKI(t testing.TB, dir string) *PKI {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: dir, CA: NewCA(t, dir, "ca"), CAFile: filepath.Join(dir, "ca-bundle.pem"), Services: map[tlsx.Role]CertFiles{}}
	WriteFileAtomic(t, p.CAFile, p.CA.CertPEM)
	for _, r := range []tlsx.Role{tlsx.RoleRouter, tlsx.RoleStorage, tlsx.RoleMigrator} {
		sub := filepath.Join(dir, string(r))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		p.Services[r] = p.CA.ServiceCert(t, sub, r)
	}
	p.Admin = p.CA.PrincipalCert(t, dir, AdminPrincipal)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	p.AuthKeyFile = filepath.Join(dir, "auth.key")
	WriteFileAtomic(t, p.AuthKeyFile, []byte(hex.EncodeToString(key)+"\n"))
	return p
}

// TLSArgs are the --tls-* flags of a process of role r.
func (p *PKI) TLSArgs(r tlsx.Role) []string {
	s := p.Services[r]
	return []string{"--tls-cert-file", s.CertFile, "--tls-key-file", s.KeyFile, "--tls-ca-file", p.CAFile}
}

// Pool is a cert pool of the CAs.
func Pool(cas ...*CA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.Cert)
	}
	return pool
}

// ClientTLS is a client TLS configuration that trusts roots and presents
// cert (none when cert is the zero CertFiles) whatever CAs the server asks
// for: with Certificates alone, crypto/tls would quietly send no
// certificate when the server's acceptable CAs do not include its issuer,
// and a test of another CA's certificate would test no certificate.
func ClientTLS(t testing.TB, roots *x509.CertPool, cert CertFiles) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert.CertFile != "" {
		kp, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatalf("framework: key pair %s: %v", cert.CertFile, err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
	}
	return c
}

// fileClientTLS is the client TLS of f as the files are now (a CA bundle
// may hold several CAs), presenting f's certificate whatever CAs the
// server asks for.
func fileClientTLS(f tlsx.Files) (*tls.Config, error) {
	src, err := tlsx.Load(f, "", slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	// Closed, the source keeps the material it loaded.
	src.Close()
	return src.ClientTLSConfig(), nil
}

// WriteFileAtomic writes data to path (mode 0600) through a temporary
// file and a rename (tlsx.WriteFileAtomic), so a reader never sees half a
// file.
func WriteFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := tlsx.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
