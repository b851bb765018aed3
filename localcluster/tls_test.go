package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestTLS runs a cluster with the dev PKI: a client with the CA (and the
// admin certificate) reads and writes through the router, which reaches
// the storage nodes over mutual TLS; a plaintext client is refused, and so
// is the admin certificate at a storage node (services only).
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a cluster (CI runs it: make test has no -short)")
	}
	dir := t.TempDir()
	pki, err := tlsx.WriteDevPKI(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(t.Context(), Options{Dir: dir, Nodes: 2, Routers: 1, Partitions: 16, NoSync: true,
		DynamoDBAddr: "127.0.0.1:0", Migrator: true, TLS: &pki})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	admin, err := tlsx.Load(pki.Admin, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, c.RouterAddrs(), client.WithTLS(admin.ClientTLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTable(ctx, "tls_table"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "tls_table", []byte("k"), nil, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if it, found, err := cl.Get(ctx, "tls_table", []byte("k"), nil); err != nil || !found || string(it.Value) != "v" {
		t.Fatalf("get: %v %v %v", it, found, err)
	}

	// The migrator serves TLS too.
	mcc, err := grpcx.Dial(c.Migrator.Addr(), grpc.WithTransportCredentials(admin.ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer mcc.Close()
	if _, err := healthpb.NewHealthClient(mcc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("migrator health over TLS: %v", err)
	}

	// Plaintext to the router is refused.
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	defer pcancel()
	if pc, err := client.New(pctx, c.RouterAddrs()); err == nil {
		_ = pc.Close()
		t.Fatal("plaintext client connected")
	}

	// A principal certificate is refused by a storage node.
	scc, err := grpcx.Dial(c.Nodes[0].Addr(), grpc.WithTransportCredentials(admin.ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer scc.Close()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, err := healthpb.NewHealthClient(scc).Check(sctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("storage node served a principal certificate")
	}

	// The DynamoDB endpoint serves HTTPS with the router's certificate.
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	db := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("https://" + c.DynamoDBAddr()),
		Credentials: credentials.NewStaticCredentialsProvider("veltrix", "veltrix", ""),
		HTTPClient:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	})
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("DynamoDB over HTTPS: %v", err)
	}
}
