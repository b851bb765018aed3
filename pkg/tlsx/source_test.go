package tlsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// testCA is a CA for tests.
type testCA struct{ *CA }

func newTestCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	ca, err := NewCA(pkix.Name{CommonName: name}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")); err != nil {
		t.Fatal(err)
	}
	return testCA{ca}
}

// issue writes a certificate of id (the zero Identity: no veltrix URI)
// signed by ca to dir/name.pem and dir/name-key.pem, valid for localhost
// and 127.0.0.1 for life (expired for -life when life is negative).
func (ca testCA) issue(t *testing.T, dir, name string, id Identity, life time.Duration) Files {
	t.Helper()
	l := Leaf{Name: name, Role: id.Role, Principal: id.Principal, Hosts: []string{"localhost", "127.0.0.1"}, Server: true, Client: true, NotAfter: time.Now().Add(life)}
	if life < 0 {
		l.NotBefore = time.Now().Add(3 * life)
	}
	out, err := ca.Issue(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), l)
	if err != nil {
		t.Fatal(err)
	}
	return out.Files
}

func loadT(t *testing.T, f Files, prefix string) *Source {
	t.Helper()
	s, err := load(f, prefix, testLogger(t), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	good := ca.issue(t, dir, "good", Identity{Role: RoleRouter}, time.Hour)
	other := ca.issue(t, dir, "other", Identity{Role: RoleRouter}, time.Hour)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	junk := write("junk.pem", "hello\n")
	badCert := write("badcert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	badKey := write("badkey.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		f    Files
		want []string
	}{
		{"missing cert", Files{missing, good.KeyFile, ca.CertFile}, []string{"--tls-cert-file " + missing, "no such file"}},
		{"missing key", Files{good.CertFile, missing, ca.CertFile}, []string{"--tls-key-file " + missing}},
		{"missing ca", Files{good.CertFile, good.KeyFile, missing}, []string{"--tls-ca-file " + missing}},
		{"cert no PEM", Files{junk, good.KeyFile, ca.CertFile}, []string{"--tls-cert-file " + junk + ": no PEM CERTIFICATE block"}},
		{"bad cert", Files{badCert, good.KeyFile, ca.CertFile}, []string{"--tls-cert-file " + badCert + ": bad certificate"}},
		{"key no PEM", Files{good.CertFile, junk, ca.CertFile}, []string{"--tls-key-file " + junk + ": no PEM PRIVATE KEY block"}},
		{"bad key", Files{good.CertFile, badKey, ca.CertFile}, []string{"--tls-key-file " + badKey + ": bad key"}},
		{"key mismatch", Files{good.CertFile, other.KeyFile, ca.CertFile}, []string{"--tls-key-file " + other.KeyFile + ": key does not match", good.CertFile}},
		{"ca no certs", Files{good.CertFile, good.KeyFile, junk}, []string{"--tls-ca-file " + junk + ": no PEM CERTIFICATE block"}},
		{"ca is a key", Files{good.CertFile, good.KeyFile, good.KeyFile}, []string{"--tls-ca-file " + good.KeyFile}},
		{"key without cert", Files{"", good.KeyFile, ca.CertFile}, []string{"--tls-key-file " + good.KeyFile + ": --tls-cert-file is required"}},
		{"cert without key", Files{good.CertFile, "", ca.CertFile}, []string{"--tls-cert-file " + good.CertFile + ": --tls-key-file is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(tc.f, "tls", testLogger(t))
			if err == nil {
				s.Close()
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("etcd flag names", func(t *testing.T) {
		_, err := Load(Files{junk, good.KeyFile, ca.CertFile}, "etcd", testLogger(t))
		if err == nil || !strings.Contains(err.Error(), "--etcd-cert "+junk) {
			t.Fatalf("err = %v", err)
		}
		_, err = Load(Files{good.CertFile, good.KeyFile, junk}, "", testLogger(t))
		if err == nil || !strings.Contains(err.Error(), "--cacert "+junk) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("expired is a warning", func(t *testing.T) {
		old := ca.issue(t, dir, "old", Identity{Role: RoleRouter}, -time.Hour)
		s, err := Load(old, "tls", testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

// serve runs a TLS echo server with cfg; each connection echoes one line.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// ping dials addr and checks one round trip.
func ping(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if err := roundTrip(tc); err != nil {
		_ = c.Close()
		return nil, err
	}
	return tc, nil
}

func roundTrip(c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

func TestRequireService(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	otherCA := newTestCA(t, dir, "ca2")
	srv := loadT(t, ca.issue(t, dir, "storage", Identity{Role: RoleStorage}, time.Hour), "tls")
	addr, errs := serve(t, srv.ServerTLSConfig(RequireService, RoleRouter, RoleMigrator))

	client := func(f Files) *tls.Config { return loadT(t, f, "tls").ClientTLSConfig() }
	router := ca.issue(t, dir, "router", Identity{Role: RoleRouter}, time.Hour)
	c, err := ping(addr, client(router))
	if err != nil {
		t.Fatalf("router refused: %v", err)
	}
	_ = c.Close()

	for _, tc := range []struct {
		name string
		f    Files
		want string
	}{
		{"principal", ca.issue(t, dir, "alice", Identity{Principal: "alice"}, time.Hour), "presented principal:alice"},
		{"storage role not allowed", ca.issue(t, dir, "st2", Identity{Role: RoleStorage}, time.Hour), "presented service:storage"},
		{"other CA", func() Files {
			f := otherCA.issue(t, dir, "evil", Identity{Role: RoleRouter}, time.Hour)
			f.CAFile = ca.CertFile // trusts the server
			return f
		}(), "unknown authority"},
		{"no client cert", Files{CAFile: ca.CertFile}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := ping(addr, client(tc.f)); err == nil {
				_ = c.Close()
				t.Fatal("accepted")
			}
			select {
			case err := <-errs:
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("server error %q does not contain %q", err, tc.want)
				}
				if tc.name == "principal" && !errors.Is(err, ErrNotService) {
					t.Fatalf("server error %v is not ErrNotService", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no server error")
			}
		})
	}
}

func TestPlaintextAndWrongCA(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	otherCA := newTestCA(t, dir, "ca2")
	srv := loadT(t, ca.issue(t, dir, "router", Identity{Role: RoleRouter}, time.Hour), "tls")
	addr, _ := serve(t, srv.ServerTLSConfig(VerifyIfGiven))

	// A plaintext client gets no answer it can read.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	b, _ := io.ReadAll(c)
	_ = c.Close()
	if strings.Contains(string(b), "HTTP") || len(b) > 16 {
		t.Fatalf("plaintext client got %q", b)
	}

	// VerifyIfGiven lets a client without a certificate in.
	anon := loadT(t, Files{CAFile: ca.CertFile}, "")
	if c, err := ping(addr, anon.ClientTLSConfig()); err != nil {
		t.Fatalf("client without cert: %v", err)
	} else {
		_ = c.Close()
	}

	// A client trusting another CA refuses the server.
	wrong := loadT(t, Files{CAFile: otherCA.CertFile}, "")
	if c, err := ping(addr, wrong.ClientTLSConfig()); err == nil {
		_ = c.Close()
		t.Fatal("client accepted a server of another CA")
	} else if !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("err = %v", err)
	}

	// The server name is checked.
	cfg := anon.ClientTLSConfig()
	cfg.ServerName = "elsewhere.example"
	if c, err := ping(addr, cfg); err == nil {
		_ = c.Close()
		t.Fatal("client accepted a server certificate for another name")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvFiles := ca.issue(t, dir, "storage", Identity{Role: RoleStorage}, time.Hour)
	cliFiles := ca.issue(t, dir, "router", Identity{Role: RoleRouter}, time.Hour)
	srv := loadT(t, srvFiles, "tls")
	cli := loadT(t, cliFiles, "tls")
	addr, _ := serve(t, srv.ServerTLSConfig(RequireService, RoleRouter))

	old, err := ping(addr, cli.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldSerial := srv.Certificate().SerialNumber

	// A half-written rotation (new cert, old key) keeps the old material.
	ca2dir := t.TempDir()
	ca2 := newTestCA(t, ca2dir, "ca")
	next := ca2.issue(t, ca2dir, "storage", Identity{Role: RoleStorage}, time.Hour)
	copyFile(t, next.CertFile, srvFiles.CertFile)
	time.Sleep(100 * time.Millisecond)
	if srv.Certificate().SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatal("a certificate without its key was loaded")
	}
	if c, err := ping(addr, cli.ClientTLSConfig()); err != nil {
		t.Fatalf("half-written rotation broke new handshakes: %v", err)
	} else {
		_ = c.Close()
	}

	// Rotate everything to the new CA: both sides' certs and CA files.
	copyFile(t, next.KeyFile, srvFiles.KeyFile)
	copyFile(t, ca2.CertFile, srvFiles.CAFile)
	nextCli := ca2.issue(t, ca2dir, "router", Identity{Role: RoleRouter}, time.Hour)
	copyFile(t, nextCli.KeyFile, cliFiles.KeyFile)
	copyFile(t, nextCli.CertFile, cliFiles.CertFile)
	waitFor(t, func() bool {
		return srv.Certificate().Issuer.String() == ca2.Cert.Subject.String() && cli.Certificate().Equal(mustLeaf(t, nextCli))
	})
	c, err := ping(addr, cli.ClientTLSConfig())
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(mustLeaf(t, next)) {
		t.Fatalf("server presented %v, want the rotated certificate", got.SerialNumber)
	}
	_ = c.Close()
	// The connection from before the rotation still works.
	if err := roundTrip(old); err != nil {
		t.Fatalf("old connection: %v", err)
	}
	// A client of the old CA is refused now.
	stale := loadT(t, ca.issue(t, t.TempDir(), "router", Identity{Role: RoleRouter}, time.Hour), "tls")
	if c, err := ping(addr, stale.ClientTLSConfig()); err == nil {
		_ = c.Close()
		t.Fatal("old CA's client accepted after rotation")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustLeaf(t *testing.T, f Files) *x509.Certificate {
	t.Helper()
	c, _, err := loadPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriteDevPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := WriteDevPKI(dir, []string{"node1.example", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Role{RoleRouter, RoleStorage, RoleMigrator} {
		leaf := mustLeaf(t, p.Service(r))
		if id := CertIdentity(leaf); id.Role != r {
			t.Errorf("%s: identity %v", r, id)
		}
		if err := leaf.VerifyHostname("node1.example"); err != nil {
			t.Error(err)
		}
		if err := leaf.VerifyHostname("10.0.0.1"); err != nil {
			t.Error(err)
		}
	}
	if id := CertIdentity(mustLeaf(t, p.Admin)); id.Principal != DevAdmin {
		t.Errorf("admin identity %v", id)
	}
	if fi, err := os.Stat(p.Router.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("router key mode: %v %v", fi.Mode(), err)
	}
	// Idempotent: nothing is rewritten.
	before := readAll(t, dir)
	p2, err := WriteDevPKI(dir, []string{"node1.example", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if p2 != p {
		t.Fatalf("paths changed: %+v", p2)
	}
	after := readAll(t, dir)
	for name, b := range before {
		if string(after[name]) != string(b) {
			t.Errorf("%s rewritten", name)
		}
	}
	// A new host reissues the leaves under the same CA.
	if _, err := WriteDevPKI(dir, []string{"node2.example"}); err != nil {
		t.Fatal(err)
	}
	after = readAll(t, dir)
	if string(after["ca.pem"]) != string(before["ca.pem"]) {
		t.Error("CA rewritten")
	}
	if string(after["router.pem"]) == string(before["router.pem"]) {
		t.Error("router certificate not reissued for a new host")
	}
	// The files serve mutual TLS.
	srv := loadT(t, p.Storage, "tls")
	addr, _ := serve(t, srv.ServerTLSConfig(RequireService, RoleRouter))
	cli := loadT(t, p.Router, "tls")
	if c, err := ping(addr, cli.ClientTLSConfig()); err != nil {
		t.Fatal(err)
	} else {
		_ = c.Close()
	}
}

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}
