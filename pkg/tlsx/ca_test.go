package tlsx

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCAIssue(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA(pkix.Name{CommonName: "test CA", Organization: []string{"test"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertFile, filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || string(loaded.CertPEM) != string(ca.CertPEM) {
		t.Fatal("LoadCA read another CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, tc := range []struct {
		name  string
		leaf  Leaf
		want  Identity
		usage x509.ExtKeyUsage
	}{
		{"service", Leaf{Name: "r", Role: RoleRouter, Hosts: []string{"127.0.0.1", "localhost", "127.0.0.1"}, Server: true, Client: true}, Identity{Role: RoleRouter}, x509.ExtKeyUsageServerAuth},
		{"principal", Leaf{Name: "alice", Principal: "alice", Client: true}, Identity{Principal: "alice"}, x509.ExtKeyUsageClientAuth},
		{"no veltrix URI", Leaf{Name: "veltrix-router", Client: true}, Identity{Principal: "veltrix-router"}, x509.ExtKeyUsageClientAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Issued by the loaded CA: a dev PKI issues with the CA it finds.
			f, err := loaded.Issue(filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+"-key.pem"), tc.leaf)
			if err != nil {
				t.Fatal(err)
			}
			if f.CAFile != ca.CertFile {
				t.Errorf("CAFile %q", f.CAFile)
			}
			leaf := mustLeaf(t, f.Files)
			if !leaf.Equal(f.Cert) {
				t.Error("the files hold another certificate")
			}
			if id := CertIdentity(leaf); id != tc.want {
				t.Errorf("identity %v, want %v", id, tc.want)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Error(err)
			}
			if len(tc.leaf.Hosts) > 0 && (len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 1) {
				t.Errorf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
			}
			if fi, err := os.Stat(f.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode: %v %v", fi.Mode(), err)
			}
		})
	}
	if _, err := ca.Issue(filepath.Join(dir, "both.pem"), filepath.Join(dir, "both-key.pem"), Leaf{Role: RoleRouter, Principal: "alice"}); err == nil {
		t.Error("a certificate naming a service and a principal was issued")
	}
	if _, err := LoadCA(filepath.Join(dir, "service.pem"), filepath.Join(dir, "service-key.pem")); err == nil {
		t.Error("a leaf loaded as a CA")
	}
}
