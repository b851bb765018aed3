package framework

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
)

// TestPKI checks the test PKI says what the security contract expects:
// service certificates name their role, the admin certificate its
// principal, and the refusals are refusals for the right reason.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	p := NewPKI(t, dir)
	roots := Pool(p.CA)
	verify := func(c *x509.Certificate, usage x509.ExtKeyUsage) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	for r, f := range p.Services {
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if err := verify(f.Cert, u); err != nil {
				t.Errorf("%s certificate, usage %v: %v", r, u, err)
			}
		}
		if err := f.Cert.VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("%s certificate: %v", r, err)
		}
		if id := tlsx.CertIdentity(f.Cert); id.Role != r {
			t.Errorf("%s certificate identity %v", r, id)
		}
		if _, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile); err != nil {
			t.Errorf("%s files: %v", r, err)
		}
	}
	if id := tlsx.CertIdentity(p.Admin.Cert); id.Principal != AdminPrincipal || id.Role != "" {
		t.Errorf("admin certificate identity %v", id)
	}
	if err := verify(p.Admin.Cert, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("admin certificate: %v", err)
	}
	if id := tlsx.CertIdentity(p.CA.NonServiceCert(t, dir).Cert); id.Role != "" {
		t.Errorf("non-service certificate identity %v; want no role", id)
	}
	other := NewCA(t, dir, "other")
	if err := verify(other.ServiceCert(t, t.TempDir(), tlsx.RoleRouter).Cert, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("another CA's certificate verified against the cluster CA")
	}
	if b, err := os.ReadFile(p.AuthKeyFile); err != nil || len(b) != 65 {
		t.Errorf("auth key file: %d bytes, %v; want 64 hex characters and a newline", len(b), err)
	}
	m := WriteMalformed(t, dir)
	for _, f := range []string{m.NotPEM, m.BadDER, m.Empty, m.Missing} {
		if _, err := tls.LoadX509KeyPair(f, p.Admin.KeyFile); err == nil {
			t.Errorf("%s loads as a certificate", f)
		}
	}
}
