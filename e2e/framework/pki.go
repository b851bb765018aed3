package framework

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"google.golang.org/grpc/credentials"
)

// A test PKI made with crypto/x509 in the test's temporary directory: a CA,
// service certificates (URI SAN veltrix://service/<role>, IP SAN 127.0.0.1)
// and principal client certificates (veltrix://principal/<name>), as the
// security contract (issue #19) names identities. It also makes what a
// secured cluster must refuse: a certificate of another CA, a certificate
// that names no service, and files that are not certificates.

// CA is a certificate authority of a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM-encoded.
	PEM []byte
	// File holds PEM.
	File string
}

// CertFiles is a certificate and its key, written as PEM files.
type CertFiles struct {
	// CertFile and KeyFile are the PEM files.
	CertFile, KeyFile string
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// CertPEM and KeyPEM are the files' contents.
	CertPEM, KeyPEM []byte
}

// KeyPair is the certificate as a tls.Certificate.
func (f CertFiles) KeyPair(t testing.TB) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair(f.CertPEM, f.KeyPEM)
	if err != nil {
		t.Fatalf("framework: key pair %s: %v", f.CertFile, err)
	}
	return kp
}

// CertOptions say what a certificate names and may be used for.
type CertOptions struct {
	// CommonName is the subject CN.
	CommonName string
	// URIs are the URI SANs.
	URIs []*url.URL
	// IPs and DNSNames are further SANs.
	IPs      []net.IP
	DNSNames []string
	// Server and Client set the extended key usages.
	Server, Client bool
	// NotBefore and NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// NewCA makes a CA named name and writes its certificate to dir/name.pem.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"veltrix e2e"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("framework: CA %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.File = filepath.Join(dir, name+".pem")
	WriteFileAtomic(t, ca.File, ca.PEM)
	return ca
}

// Issue signs a certificate and writes it to dir/name.crt and dir/name.key.
func (ca *CA) Issue(t testing.TB, dir, name string, o CertOptions) CertFiles {
	t.Helper()
	key := newKey(t)
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"veltrix e2e"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         o.URIs,
		IPAddresses:  o.IPs,
		DNSNames:     o.DNSNames,
	}
	if o.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("framework: certificate %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := CertFiles{
		CertFile: filepath.Join(dir, name+".crt"),
		KeyFile:  filepath.Join(dir, name+".key"),
		Cert:     cert,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	WriteFileAtomic(t, f.KeyFile, f.KeyPEM)
	WriteFileAtomic(t, f.CertFile, f.CertPEM)
	return f
}

// ServiceCert issues the certificate of a Veltrix service of role r:
// URI SAN veltrix://service/<r>, IP SAN 127.0.0.1, DNS SAN localhost,
// usable as server and client certificate (a service presents it on its
// listeners and on its own dials).
func (ca *CA) ServiceCert(t testing.TB, dir string, r tlsx.Role) CertFiles {
	t.Helper()
	return ca.Issue(t, dir, string(r), CertOptions{
		CommonName: "veltrix-" + string(r),
		URIs:       []*url.URL{tlsx.ServiceURI(r)},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:   []string{"localhost"},
		Server:     true, Client: true,
	})
}

// PrincipalCert issues a client certificate of principal name (URI SAN
// veltrix://principal/<name>).
func (ca *CA) PrincipalCert(t testing.TB, dir, name string) CertFiles {
	t.Helper()
	return ca.Issue(t, dir, "principal-"+name, CertOptions{
		CommonName: name,
		URIs:       []*url.URL{tlsx.PrincipalURI(name)},
		Client:     true,
	})
}

// NonServiceCert issues a certificate of this CA valid for 127.0.0.1 as
// server and client that names no Veltrix service: no veltrix:// URI, CN
// "veltrix-router" (a Common Name must not make a service).
func (ca *CA) NonServiceCert(t testing.TB, dir string) CertFiles {
	t.Helper()
	return ca.Issue(t, dir, "non-service", CertOptions{
		CommonName: "veltrix-router",
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		Server:     true, Client: true,
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
	WriteFileAtomic(t, p.CAFile, p.CA.PEM)
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
		kp := cert.KeyPair(t)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
	}
	return c
}

// FileClientTLS is a client TLS configuration read from PEM files now:
// trusting the CAs in caFile (a bundle may hold several) and presenting the
// certificate in certFile and keyFile.
func FileClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no CA certificate", caFile)
	}
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs: pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil },
	}, nil
}

// WriteFileAtomic writes data to path through a temporary file and a
// rename, as cert-manager's kubelet projection does, so a reader never sees
// half a file.
func WriteFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := fmt.Sprintf("%s.tmp-%d", path, time.Now().UnixNano())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// BearerToken is the per-RPC credentials of an API key's token ("<id>.<secret>"):
// gRPC metadata "authorization: Bearer <token>", over TLS only.
func BearerToken(token string) credentials.PerRPCCredentials { return bearer(token) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
