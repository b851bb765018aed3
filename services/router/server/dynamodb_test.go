package server

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDynamoDBListener: --dynamodb-addr starts the endpoint with the
// router, it answers health at once and ServiceUnavailable (503, which the
// AWS SDKs retry) until the router can route, and Close stops it.
func TestDynamoDBListener(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := clientv3.New(topology.ClientConfig([]string{e.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := Start(t.Context(), Config{ID: "r1", ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdClient: cli,
		Partitions: 16, ReplicationFactor: 1, MinNodes: 1, DynamoDBAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.DynamoDBAddr()
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("DynamoDBAddr %q", addr)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "healthy") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(`{}`))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature="+strings.Repeat("0", 64))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "ServiceUnavailable") {
		t.Fatalf("ListTables before a placement: %d %s", resp.StatusCode, body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Fatal("the endpoint still answers after Close")
	}
}

// TestDynamoDBFlags: the endpoint is off by default and its flags read
// their environment variables.
func TestDynamoDBFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	c.EnsureDefaults()
	if c.DynamoDBAddr != "" || c.DynamoDBRegion != "veltrix" {
		t.Fatalf("defaults: addr %q region %q", c.DynamoDBAddr, c.DynamoDBRegion)
	}
	if err := fs.Parse([]string{"--dynamodb-addr", "127.0.0.1:8000", "--dynamodb-region", "eu-west-1"}); err != nil {
		t.Fatal(err)
	}
	if c.DynamoDBAddr != "127.0.0.1:8000" || c.DynamoDBRegion != "eu-west-1" {
		t.Fatalf("flags: addr %q region %q", c.DynamoDBAddr, c.DynamoDBRegion)
	}
	c.DynamoDBAddr = "8000"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--dynamodb-addr") {
		t.Fatalf("Validate with a bad address: %v", err)
	}
}
