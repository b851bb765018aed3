package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
)

// TestStartRefusesBadCertificate: a malformed certificate file refuses
// the node at start, naming the flag and the file, before the engine opens.
func TestStartRefusesBadCertificate(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsx.WriteDevPKI(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := pki.Storage
	f.CertFile = bad
	data := filepath.Join(dir, "data")
	_, err = Start(t.Context(), Config{DataDir: data, TLS: f, EtcdEndpoints: []string{"http://127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert-file "+bad+": no PEM CERTIFICATE block") {
		t.Fatalf("Start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "pebble")); err == nil {
		t.Error("the engine was opened before the certificate was checked")
	}
}
