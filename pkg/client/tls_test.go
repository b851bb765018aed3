package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool
// trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "router"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLSAndBearerToken(t *testing.T) {
	cert, pool := selfSigned(t)
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	var mu sync.Mutex
	var gotAuth []string
	f, err := startFake(st,
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			mu.Lock()
			gotAuth = md.Get("authorization")
			mu.Unlock()
			return h(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Stop)

	c := newClient(t, []string{f.addr}, client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), client.WithBearerToken("VXABC.secret"))
	if _, _, err := c.Get(t.Context(), table, []byte("k"), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gotAuth) != 1 || gotAuth[0] != "Bearer VXABC.secret" {
		t.Fatalf("authorization metadata %q", gotAuth)
	}

	// A plaintext client never connects.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if c, err := client.New(ctx, []string{f.addr}); err == nil {
		_ = c.Close()
		t.Fatal("plaintext client connected to a TLS router")
	}
	// A client trusting another CA never connects.
	_, other := selfSigned(t)
	ctx, cancel = context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if c, err := client.New(ctx, []string{f.addr}, client.WithTLS(&tls.Config{RootCAs: other, MinVersion: tls.VersionTLS12})); err == nil {
		_ = c.Close()
		t.Fatal("client accepted a router of another CA")
	}
}

func TestBearerTokenNeedsTLS(t *testing.T) {
	_, err := client.New(t.Context(), []string{"127.0.0.1:1"}, client.WithBearerToken("VXABC.secret"))
	if err == nil || !strings.Contains(err.Error(), "transport") {
		t.Fatalf("token over plaintext: %v", err)
	}
	_, err = client.New(t.Context(), []string{"127.0.0.1:1"}, client.WithBearerToken(""))
	if err == nil || !strings.Contains(err.Error(), "bearer token") {
		t.Fatalf("empty token: %v", err)
	}
}
