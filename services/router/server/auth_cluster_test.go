package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/auth"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"github.com/veltrixdb/veltrix/services/router/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log sink tests read while servers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func bearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

type authClients struct {
	kv    kvv1.KVServiceClient
	admin kvv1.AdminServiceClient
	auth  authv1.AuthServiceClient
}

// TestAuthCluster: with --auth on two routers, a key with read on table a
// reads a and nothing else, is refused without its token, and once revoked
// on router 1 is refused by router 2 within a second; admin operations
// need admin on "*"; refusals and admin calls are audited.
func TestAuthCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an in-process cluster (etcd, a storage node, two routers); CI runs it without -short")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "seal.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: dir, Cluster: "authz", Nodes: 1, Routers: 2, RF: 1, Partitions: 8,
		NoSync: true, CacheBytes: 1 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
		RouterAuth: server.AuthConfig{Enabled: true, KeyFile: keyFile, Admins: []string{"root"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var cl []authClients
	for _, addr := range c.RouterAddrs() {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cl = append(cl, authClients{kvv1.NewKVServiceClient(cc), kvv1.NewAdminServiceClient(cc), authv1.NewAuthServiceClient(cc)})
	}
	ctx := t.Context()

	// Bootstrap: a key of admin "root" straight in the store (without TLS
	// there is no root client certificate); everything else goes through
	// AuthService.
	seal, err := auth.LoadSealKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(ctx, c.EtcdCli, "authz", seal, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.SetGrants(ctx, "root", nil); err != nil {
		t.Fatal(err)
	}
	rootKey, err := st.CreateKey(ctx, "root", "test")
	if err != nil {
		t.Fatal(err)
	}
	root := rootKey.Token()
	waitFor(t, "routers know root's key", func() bool {
		for _, r := range cl {
			if _, err := r.auth.ListPrincipals(bearer(ctx, root), &authv1.ListPrincipalsRequest{}); err != nil {
				return false
			}
		}
		return true
	})

	for _, name := range []string{"aaa", "bbb"} {
		if _, err := cl[0].admin.CreateTable(bearer(ctx, root), &kvv1.CreateTableRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl[0].auth.SetGrants(bearer(ctx, root), &authv1.SetGrantsRequest{Principal: "reader",
		Grants: []*authv1.Grant{{Table: "aaa", Permission: authv1.Permission_PERMISSION_READ}}}); err != nil {
		t.Fatal(err)
	}
	ck, err := cl[0].auth.CreateKey(bearer(ctx, root), &authv1.CreateKeyRequest{Principal: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	reader := ck.GetToken()
	if ck.GetKey().GetCreatedBy() != "root" || !strings.HasPrefix(reader, ck.GetKey().GetId()+".") {
		t.Fatalf("CreateKey: %v", ck)
	}
	// Both routers must see the tables before the checks below.
	waitFor(t, "router 2 sees the tables", func() bool {
		_, err := cl[1].kv.Get(bearer(ctx, reader), &kvv1.GetRequest{Key: &kvv1.Key{Table: "aaa", PartitionKey: []byte("k")}})
		return err == nil
	})

	key := func(table string) *kvv1.Key { return &kvv1.Key{Table: table, PartitionKey: []byte("k")} }
	check := func(what string, err error, want codes.Code, inMsg ...string) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", what, err, want)
			return
		}
		for _, s := range inMsg {
			if !strings.Contains(status.Convert(err).Message(), s) {
				t.Errorf("%s: message %q lacks %q", what, status.Convert(err).Message(), s)
			}
		}
	}
	for i, r := range cl {
		_, err := r.kv.Get(bearer(ctx, reader), &kvv1.GetRequest{Key: key("aaa")})
		check("reader Get aaa", err, codes.OK)
		_, err = r.kv.Put(bearer(ctx, reader), &kvv1.PutRequest{Key: key("aaa"), Value: []byte("v")})
		check("reader Put aaa", err, codes.PermissionDenied, `"reader"`, "write", `"aaa"`, "/veltrix.kv.v1.KVService/Put")
		_, err = r.kv.BatchGet(bearer(ctx, reader), &kvv1.BatchGetRequest{Keys: []*kvv1.Key{key("aaa"), key("bbb")}})
		check("reader BatchGet aaa+bbb", err, codes.PermissionDenied, `"bbb"`)
		_, err = r.kv.Get(bearer(ctx, reader), &kvv1.GetRequest{Key: key("bbb")})
		check("reader Get bbb", err, codes.PermissionDenied, `"bbb"`, "read")
		_, err = r.kv.Get(ctx, &kvv1.GetRequest{Key: key("aaa")})
		check("Get without a token", err, codes.Unauthenticated, "missing credentials")
		_, err = r.kv.Get(bearer(ctx, ck.GetKey().GetId()+".not-the-secret"), &kvv1.GetRequest{Key: key("aaa")})
		check("Get with a wrong secret", err, codes.Unauthenticated, "wrong secret")
		_, err = r.admin.ClusterStatus(bearer(ctx, reader), &kvv1.ClusterStatusRequest{})
		check("reader ClusterStatus", err, codes.PermissionDenied, `"*"`)
		_, err = r.admin.RemoveNode(bearer(ctx, reader), &kvv1.RemoveNodeRequest{NodeId: "n1"})
		check("reader RemoveNode", err, codes.PermissionDenied, "admin")
		_, err = r.admin.DeleteTable(bearer(ctx, reader), &kvv1.DeleteTableRequest{Name: "aaa"})
		check("reader DeleteTable", err, codes.PermissionDenied, "admin")
		_, err = r.auth.ListPrincipals(bearer(ctx, reader), &authv1.ListPrincipalsRequest{})
		check("reader ListPrincipals", err, codes.PermissionDenied)
		_, err = r.admin.ClusterStatus(bearer(ctx, root), &kvv1.ClusterStatusRequest{})
		check("root ClusterStatus", err, codes.OK)
		lt, err := r.admin.ListTables(bearer(ctx, reader), &kvv1.ListTablesRequest{})
		if err != nil || len(lt.GetTables()) != 1 || lt.GetTables()[0].GetName() != "aaa" {
			t.Errorf("router %d: reader ListTables: %v %v, want only aaa", i+1, lt, err)
		}
		sc, err := r.kv.Scan(bearer(ctx, reader), &kvv1.ScanRequest{Table: "bbb"})
		if err == nil {
			_, err = sc.Recv()
		}
		check("reader Scan bbb", err, codes.PermissionDenied, `"bbb"`)
	}
	// The refused Put changed nothing.
	g, err := cl[0].kv.Get(bearer(ctx, root), &kvv1.GetRequest{Key: key("aaa")})
	if err != nil || g.GetFound() {
		t.Fatalf("after the refused Put: %v %v", g, err)
	}

	// An allowed Scan streams through the guard.
	if _, err := cl[0].kv.Put(bearer(ctx, root), &kvv1.PutRequest{Key: &kvv1.Key{Table: "aaa", PartitionKey: []byte("k2")}, Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	sc, err := cl[0].kv.Scan(bearer(ctx, reader), &kvv1.ScanRequest{Table: "aaa"})
	if err != nil {
		t.Fatal(err)
	}
	var items int
	for {
		m, err := sc.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reader Scan aaa: %v", err)
		}
		items += len(m.GetItems())
	}
	if items != 1 {
		t.Fatalf("reader Scan aaa: %d items, want 1", items)
	}

	// Revoked on router 1: refused by router 2 within a second.
	if _, err := cl[0].auth.RevokeKey(bearer(ctx, root), &authv1.RevokeKeyRequest{Id: ck.GetKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for {
		_, err := cl[1].kv.Get(bearer(ctx, reader), &kvv1.GetRequest{Key: key("aaa")})
		if status.Code(err) == codes.Unauthenticated {
			if !strings.Contains(err.Error(), "unknown or revoked") {
				t.Errorf("revoked key: %v", err)
			}
			break
		}
		if time.Since(begin) > time.Second {
			t.Fatalf("router 2 still accepts the revoked key after a second: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	out := logs.String()
	for _, want := range []string{
		`outcome=denied subject=reader via=token key_id=` + ck.GetKey().GetId() + ` op=/veltrix.kv.v1.KVService/Put table=aaa need=write`,
		`outcome=denied subject="" via="" key_id="" op=/veltrix.kv.v1.KVService/Get table="" need=none reason="missing credentials"`,
		`outcome=ok subject=root via=token key_id=` + rootKey.ID + ` op=/veltrix.auth.v1.AuthService/CreateKey table=* principal=reader created_key=` + ck.GetKey().GetId(),
		`outcome=ok subject=root via=token key_id=` + rootKey.ID + ` op=/veltrix.kv.v1.AdminService/CreateTable table=aaa`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
	if strings.Contains(out, ck.GetSecret()) || strings.Contains(out, rootKey.Secret) {
		t.Error("a secret is in the logs")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
