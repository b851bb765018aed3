package bench

import (
	"context"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSecurePeer: the secure peer's client really runs under auth over
// TLS. Its key reads and writes the bench table, and nothing more (creating
// a table is refused); a client with a bad token is refused.
func TestSecurePeer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a secured cluster (CI runs it: make test has no -short)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := Options{Dir: t.TempDir()}
	o.EnsureDefaults()
	d, err := startSecureVeltrix(ctx, ClusterOptions{Dir: o.Dir, Nodes: 1, RF: 1, Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := d.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if found, err := d.Get(ctx, []byte("k")); err != nil || !found {
		t.Fatalf("get: %t %v", found, err)
	}
	if _, err := d.c.CreateTable(ctx, "other"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("CreateTable with the bench key: %v, want PermissionDenied", err)
	}
	bad, err := client.New(ctx, []string{d.cluster.Router.Addr()}, client.WithTLS(d.sec.caOnly),
		client.WithBearerToken(d.sec.keyID+".wrong"), client.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, _, err := bad.Get(ctx, benchTable, []byte("k"), nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Get with a bad token: %v, want Unauthenticated", err)
	}
}
