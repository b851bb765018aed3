package svcmain

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type tlsCfg struct {
	Cluster, Listen, Metrics string
	Etcd                     []string
	Shutdown                 time.Duration
	TLS, EtcdTLS             tlsx.Files
	MetricsTLS               bool
}

func (c *tlsCfg) common() Common {
	return Common{Cluster: &c.Cluster, EtcdEndpoints: &c.Etcd, ListenAddr: &c.Listen, MetricsAddr: &c.Metrics,
		ShutdownTimeout: &c.Shutdown, TLS: &c.TLS, EtcdTLS: &c.EtcdTLS, MetricsTLS: &c.MetricsTLS}
}

func TestCommonTLSFlagsAndValidate(t *testing.T) {
	var c tlsCfg
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.common().AddFlags(fs, Addrs{Listen: "127.0.0.1:0"})
	err := fs.Parse([]string{"--tls-cert-file=c.pem", "--tls-key-file=k.pem", "--tls-ca-file=ca.pem",
		"--etcd-cacert=eca.pem", "--etcd-cert=ec.pem", "--etcd-key=ek.pem", "--metrics-tls", "--etcd-endpoints=https://e:2379"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS != (tlsx.Files{CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem"}) ||
		c.EtcdTLS != (tlsx.Files{CertFile: "ec.pem", KeyFile: "ek.pem", CAFile: "eca.pem"}) || !c.MetricsTLS {
		t.Fatalf("flags: %+v", c)
	}
	if errs := c.common().Validate(); len(errs) != 0 {
		t.Fatalf("valid flags: %v", errs)
	}
	for _, tc := range []struct {
		name string
		mod  func(*tlsCfg)
		want string
	}{
		{"key without cert", func(c *tlsCfg) { c.TLS.CertFile = "" }, "--tls-key-file k.pem: --tls-cert-file is required"},
		{"cert without key", func(c *tlsCfg) { c.TLS.KeyFile = "" }, "--tls-cert-file c.pem: --tls-key-file is required"},
		{"cert without ca", func(c *tlsCfg) { c.TLS.CAFile = "" }, "--tls-ca-file is required"},
		{"metrics tls without tls", func(c *tlsCfg) { c.TLS = tlsx.Files{} }, "--metrics-tls: --tls-cert-file is required"},
		{"etcd key without cert", func(c *tlsCfg) { c.EtcdTLS.CertFile = "" }, "--etcd-key ek.pem: --etcd-cert is required"},
		{"etcd http", func(c *tlsCfg) { c.Etcd = []string{"http://e:2379"} }, "--etcd-endpoints http://e:2379: want https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := c
			bad.Etcd = append([]string(nil), c.Etcd...)
			tc.mod(&bad)
			errs := bad.common().Validate()
			if len(errs) == 0 || !strings.Contains(errorsString(errs), tc.want) {
				t.Fatalf("errors %v, want %q", errs, tc.want)
			}
		})
	}
}

func errorsString(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error() + "\n")
	}
	return b.String()
}

func TestSkeletonTLS(t *testing.T) {
	pki, err := tlsx.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))

	t.Run("malformed file refuses to start", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
			t.Fatal(err)
		}
		f := pki.Storage
		f.CertFile = bad
		sk := New(Options{Name: "storage", Logger: logger, TLS: f})
		err := sk.LoadTLS()
		if err == nil || !strings.Contains(err.Error(), "--tls-cert-file "+bad) {
			t.Fatalf("LoadTLS: %v", err)
		}
		_ = sk.Close(Stages{})
	})

	sk := New(Options{Name: "storage", Logger: logger, ShutdownTimeout: time.Second, TLS: pki.Storage, MetricsTLS: true,
		ClientAuth: tlsx.RequireService, AllowedRoles: []tlsx.Role{tlsx.RoleRouter, tlsx.RoleStorage}})
	if err := sk.LoadTLS(); err != nil {
		t.Fatal(err)
	}
	if err := sk.Listen("127.0.0.1:0", grpcx.ServerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sk.Serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sk.Close(Stages{})
	sk.SetReady()

	check := func(sk *Skeleton) error {
		cc, err := grpcx.Dial(sk.Addr(), sk.DialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// Its own DialOptions present a storage certificate: accepted.
	if err := check(sk); err != nil {
		t.Fatalf("storage to storage: %v", err)
	}
	// Plaintext (a skeleton without TLS dials with nothing) is refused.
	if err := check(&Skeleton{ln: sk.ln}); err == nil {
		t.Fatal("plaintext client accepted")
	}
	// A migrator certificate is not among the allowed roles.
	mig := New(Options{Name: "migrator", Logger: logger, TLS: pki.Migrator})
	if err := mig.LoadTLS(); err != nil {
		t.Fatal(err)
	}
	defer mig.Close(Stages{})
	mig.ln = sk.ln
	if err := check(mig); err == nil {
		t.Fatal("migrator certificate accepted by a storage-and-router-only listener")
	}

	// /metrics over HTTPS, verified with the CA.
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + sk.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics: %d %.100s", resp.StatusCode, body)
	}
	// Plain HTTP gets no metrics (net/http answers a plaintext request to
	// a TLS port with a 400).
	if resp, err := http.Get("http://" + sk.MetricsAddr() + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("plain HTTP got metrics: %d", resp.StatusCode)
		}
	}
}

// TestSkeletonEtcdTLS connects a skeleton to an etcd member that serves
// clients over TLS and requires client certificates: with --etcd-cacert,
// --etcd-cert and --etcd-key it reads and writes; without a client
// certificate, or trusting another CA, it gets nothing.
func TestSkeletonEtcdTLS(t *testing.T) {
	pki, err := tlsx.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsx.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The member serves with the dev storage certificate (serverAuth,
	// 127.0.0.1) and trusts the dev CA for client certificates.
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true,
		ClientTLS: &etcdembed.ClientTLS{CertFile: pki.Storage.CertFile, KeyFile: pki.Storage.KeyFile, CAFile: pki.CA}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.Endpoint(), "https://") {
		t.Fatalf("endpoint %s is not https", e.Endpoint())
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))

	connect := func(f tlsx.Files) (string, error) {
		sk := New(Options{Name: "router", Logger: logger, EtcdTLS: f, ShutdownTimeout: time.Second})
		defer sk.Close(Stages{})
		if err := sk.LoadTLS(); err != nil {
			return "", err
		}
		if err := sk.ConnectEtcd(nil, []string{e.Endpoint()}); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := sk.Etcd.Put(ctx, "/veltrix/tls-test", f.CertFile); err != nil {
			return "", err
		}
		resp, err := sk.Etcd.Get(ctx, "/veltrix/tls-test")
		if err != nil {
			return "", err
		}
		if len(resp.Kvs) != 1 {
			return "", fmt.Errorf("got %d keys", len(resp.Kvs))
		}
		return string(resp.Kvs[0].Value), nil
	}
	router := pki.Router
	if got, err := connect(router); err != nil || got != router.CertFile {
		t.Fatalf("with the router's certificate: %q, %v", got, err)
	}
	// Only the CA: TLS without a client certificate, refused by etcd.
	if _, err := connect(tlsx.Files{CAFile: pki.CA}); err == nil {
		t.Fatal("a client without a certificate wrote to etcd")
	}
	// Another CA's certificate and trust: etcd's certificate does not
	// verify, and etcd does not accept the client's.
	if _, err := connect(other.Router); err == nil {
		t.Fatal("a client of another CA wrote to etcd")
	}
}
