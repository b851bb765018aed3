package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/cluster"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func createTable(t *testing.T, admin kvv1.AdminServiceClient, name string) {
	t.Helper()
	if _, err := admin.CreateTable(context.Background(), &kvv1.CreateTableRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
}

func key(table, pk, sk string) *kvv1.Key {
	return &kvv1.Key{Table: table, PartitionKey: []byte(pk), SortKey: []byte(sk)}
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v; want %s containing %q", err, code, substr)
	}
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and fails on the
// first error.
func parallel(t *testing.T, n, workers int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	func() {
		for i := 0; i < n; i++ {
			select {
			case next <- i:
			case err := <-errs:
				errs <- err
				return
			}
		}
	}()
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func TestRouterPutGetThroughEitherRouter(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, Routers: 2, NoSync: true})
	kv0, admin := c.Clients(0)
	kv1c, _ := c.Clients(1)
	kvs := []kvv1.KVServiceClient{kv0, kv1c}
	createTable(t, admin, "users")
	// The second router learns about the table through its watch.
	waitFor(t, "table on router 2", func() bool {
		_, err := kv1c.Get(context.Background(), &kvv1.GetRequest{Key: key("users", "x", "")})
		return err == nil
	})
	ctx := context.Background()
	const n = 10000
	parallel(t, n, 16, func(i int) error {
		_, err := kvs[i%2].Put(ctx, &kvv1.PutRequest{Key: key("users", fmt.Sprintf("user-%d", i), ""), Value: []byte(fmt.Sprintf("value-%d", i))})
		return err
	})
	parallel(t, n, 16, func(i int) error {
		// QUORUM reads after QUORUM writes always see the write (R + W > RF).
		resp, err := kvs[(i+1)%2].Get(ctx, &kvv1.GetRequest{Key: key("users", fmt.Sprintf("user-%d", i), ""), Consistency: kvv1.Consistency_CONSISTENCY_QUORUM})
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("value-%d", i); !resp.Found || string(resp.Value) != want {
			return fmt.Errorf("get user-%d = %v %q, want %q", i, resp.Found, resp.Value, want)
		}
		return nil
	})

	// BatchWrite then BatchGet, with a delete and a missing key.
	var muts []*kvv1.Mutation
	for i := 0; i < 500; i++ {
		muts = append(muts, &kvv1.Mutation{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("users", fmt.Sprintf("batch-%d", i), "s"), Value: []byte(fmt.Sprint(i))})
	}
	muts = append(muts, &kvv1.Mutation{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: key("users", "user-1", "")})
	bw, err := kv1c.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: muts, Consistency: kvv1.Consistency_CONSISTENCY_ALL})
	if err != nil {
		t.Fatal(err)
	}
	if len(bw.Versions) != len(muts) || bw.Versions[0] == 0 {
		t.Fatalf("versions = %d", len(bw.Versions))
	}
	var keys []*kvv1.Key
	for i := 0; i < 500; i++ {
		keys = append(keys, key("users", fmt.Sprintf("batch-%d", i), "s"))
	}
	keys = append(keys, key("users", "user-1", ""), key("users", "nobody", ""), key("users", "user-2", ""))
	for _, lvl := range []kvv1.Consistency{kvv1.Consistency_CONSISTENCY_ONE, kvv1.Consistency_CONSISTENCY_QUORUM, kvv1.Consistency_CONSISTENCY_ALL} {
		bg, err := kv0.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: keys, Consistency: lvl})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 500; i++ {
			if r := bg.Results[i]; !r.Found || string(r.Value) != fmt.Sprint(i) {
				t.Fatalf("%s: batch-%d = %v", lvl, i, r)
			}
		}
		if bg.Results[500].Found || bg.Results[501].Found || !bg.Results[502].Found {
			t.Fatalf("%s: deleted/missing/present = %v %v %v", lvl, bg.Results[500].Found, bg.Results[501].Found, bg.Results[502].Found)
		}
	}
}

func TestRouterQuery(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, NoSync: true})
	kv, admin := c.Clients(0)
	createTable(t, admin, "events")
	ctx := context.Background()
	var muts []*kvv1.Mutation
	var all []string
	for i := 0; i < 50; i++ {
		for _, p := range []string{"a", "b"} {
			sk := fmt.Sprintf("%s#%03d", p, i)
			all = append(all, sk)
			muts = append(muts, &kvv1.Mutation{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("events", "dev-1", sk), Value: []byte(sk)})
		}
	}
	// Another partition key must not leak into the query.
	muts = append(muts, &kvv1.Mutation{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("events", "dev-2", "a#000"), Value: []byte("other")})
	// ALL, so a ONE query on any replica sees every item.
	if _, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: muts, Consistency: kvv1.Consistency_CONSISTENCY_ALL}); err != nil {
		t.Fatal(err)
	}
	sortStrings(all)
	query := func(req *kvv1.QueryRequest) []string {
		t.Helper()
		var got []string
		for pages := 0; ; pages++ {
			if pages > 200 {
				t.Fatal("too many pages")
			}
			resp, err := kv.Query(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range resp.Items {
				got = append(got, string(it.Key.SortKey))
				if string(it.Value) != string(it.Key.SortKey) {
					t.Fatalf("value of %s = %q", it.Key.SortKey, it.Value)
				}
			}
			if len(resp.NextPageToken) == 0 {
				return got
			}
			req.PageToken = resp.NextPageToken
		}
	}
	reverse := func(s []string) []string {
		out := make([]string, len(s))
		for i := range s {
			out[len(s)-1-i] = s[i]
		}
		return out
	}
	for _, lvl := range []kvv1.Consistency{kvv1.Consistency_CONSISTENCY_ONE, kvv1.Consistency_CONSISTENCY_QUORUM} {
		for _, limit := range []uint32{0, 1, 7} {
			name := fmt.Sprintf("%s/limit=%d", lvl, limit)
			check := func(what string, got, want []string) {
				t.Helper()
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Fatalf("%s %s:\n got %v\nwant %v", name, what, got, want)
				}
			}
			check("all", query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Limit: limit, Consistency: lvl}), all)
			check("reverse", query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Limit: limit, Reverse: true, Consistency: lvl}), reverse(all))
			check("prefix", query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Condition: &kvv1.QueryRequest_Prefix{Prefix: []byte("b#")}, Limit: limit, Consistency: lvl}), all[50:])
			check("range", query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Condition: &kvv1.QueryRequest_Range{Range: &kvv1.SortKeyRange{Start: []byte("a#010"), End: []byte("a#020")}}, Limit: limit, Consistency: lvl}), all[10:20])
			check("range reverse", query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Condition: &kvv1.QueryRequest_Range{Range: &kvv1.SortKeyRange{Start: []byte("a#010"), End: []byte("a#020")}}, Limit: limit, Reverse: true, Consistency: lvl}), reverse(all[10:20]))
		}
	}
	// A deleted item disappears from queries at every level.
	if _, err := kv.Delete(ctx, &kvv1.DeleteRequest{Key: key("events", "dev-1", "a#000"), Consistency: kvv1.Consistency_CONSISTENCY_ALL}); err != nil {
		t.Fatal(err)
	}
	for _, lvl := range []kvv1.Consistency{kvv1.Consistency_CONSISTENCY_ONE, kvv1.Consistency_CONSISTENCY_ALL} {
		got := query(&kvv1.QueryRequest{Table: "events", PartitionKey: []byte("dev-1"), Limit: 3, Consistency: lvl})
		if len(got) != 99 || got[0] != "a#001" {
			t.Fatalf("%s after delete: %d items starting %v", lvl, len(got), got[:1])
		}
	}
}

func TestRouterBadInput(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 1, RF: 1, NoSync: true})
	kv, admin := c.Clients(0)
	createTable(t, admin, "things")
	ctx := context.Background()
	_, err := kv.Put(ctx, &kvv1.PutRequest{Key: key("nope", "k", "")})
	wantCode(t, err, codes.NotFound, `"nope"`)
	_, err = kv.Put(ctx, &kvv1.PutRequest{Key: key("things", "", "")})
	wantCode(t, err, codes.InvalidArgument, "partition_key: empty")
	_, err = kv.Put(ctx, &kvv1.PutRequest{Key: key("things", strings.Repeat("k", 2049), "")})
	wantCode(t, err, codes.InvalidArgument, "at most 2048")
	_, err = kv.Get(ctx, &kvv1.GetRequest{Key: key("things", "k", strings.Repeat("s", 1025))})
	wantCode(t, err, codes.InvalidArgument, "sort_key")
	_, err = kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
		{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("things", "ok", "")},
		{Key: key("things", "k", "")},
	}})
	wantCode(t, err, codes.InvalidArgument, "mutations[1].type")
	// The rejected batch applied nothing.
	g, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("things", "ok", "")})
	if err != nil || g.Found {
		t.Fatalf("half-applied batch: %v %v", g, err)
	}
	keys := make([]*kvv1.Key, 1001)
	for i := range keys {
		keys[i] = key("things", "k", "")
	}
	_, err = kv.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: keys})
	wantCode(t, err, codes.InvalidArgument, "at most 1000")
	_, err = kv.Query(ctx, &kvv1.QueryRequest{Table: "things", PartitionKey: []byte("k"), PageToken: []byte("junk")})
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = kv.Query(ctx, &kvv1.QueryRequest{Table: "things", PartitionKey: []byte("k"), Limit: 10001})
	wantCode(t, err, codes.InvalidArgument, "limit")
	_, err = admin.CreateTable(ctx, &kvv1.CreateTableRequest{Name: "things"})
	wantCode(t, err, codes.AlreadyExists, "things")
	_, err = admin.CreateTable(ctx, &kvv1.CreateTableRequest{Name: "a b"})
	wantCode(t, err, codes.InvalidArgument, "name")
	_, err = admin.DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: "ghost"})
	wantCode(t, err, codes.NotFound, "ghost")

	// TTL: an item written with a past expiry reads as absent; a default
	// TTL applies to writes without one.
	_, err = admin.CreateTable(ctx, &kvv1.CreateTableRequest{Name: "sessions", DefaultTtl: durationOf(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: key("sessions", "s1", ""), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	g, err = kv.Get(ctx, &kvv1.GetRequest{Key: key("sessions", "s1", "")})
	if err != nil || !g.Found || g.ExpireTime == nil || time.Until(g.ExpireTime.AsTime()) < 59*time.Minute {
		t.Fatalf("default TTL not applied: %v %v", g, err)
	}
	if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: key("sessions", "s2", ""), Value: []byte("v"), ExpireTime: timestampOf(time.Now().Add(-time.Second))}); err != nil {
		t.Fatal(err)
	}
	g, err = kv.Get(ctx, &kvv1.GetRequest{Key: key("sessions", "s2", "")})
	if err != nil || g.Found {
		t.Fatalf("expired item found: %v %v", g, err)
	}
}

func TestRouterFaults(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3})
	kv, admin := c.Clients(0)
	createTable(t, admin, "ledger")
	ctx := context.Background()
	acked := map[string]uint64{}
	write := func(prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("%s-%d", prefix, i)
			resp, err := kv.Put(ctx, &kvv1.PutRequest{Key: key("ledger", k, ""), Value: []byte(k)})
			if err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
			acked[k] = resp.Version
		}
	}
	write("before", 200)

	// One of three down: W=2 writes and R=1 reads keep working.
	c.StopNode(2)
	write("degraded", 300)
	for k := range acked {
		g, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("ledger", k, "")})
		if err != nil || !g.Found || string(g.Value) != k {
			t.Fatalf("degraded get %s: %v %v", k, g, err)
		}
	}
	// ALL needs the missing node.
	_, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("ledger", "before-0", ""), Consistency: kvv1.Consistency_CONSISTENCY_ALL})
	wantCode(t, err, codes.Unavailable, "reached 2 of 3")

	// Back again: reads at ALL see every acknowledged write (read repair
	// fixes the node that missed them).
	c.StartNode(2)
	waitFor(t, "node 3 routable", func() bool {
		_, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("ledger", "before-0", ""), Consistency: kvv1.Consistency_CONSISTENCY_ALL})
		return err == nil
	})
	for k, ver := range acked {
		g, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("ledger", k, ""), Consistency: kvv1.Consistency_CONSISTENCY_ALL})
		if err != nil || !g.Found || g.Version != ver {
			t.Fatalf("ALL get %s after recovery: %v %v (want version %d)", k, g, err, ver)
		}
	}

	// Two of three down: writes fail with Unavailable and say why.
	c.StopNode(1)
	c.StopNode(2)
	_, err = kv.Put(ctx, &kvv1.PutRequest{Key: key("ledger", "lost", ""), Value: []byte("x")})
	// Stopped nodes deregister, so nothing is sent; a node still
	// registered would be tried and counted.
	if !strings.Contains(err.Error(), "only 1 of 3 replicas are registered, 2 required; nothing was written") &&
		!strings.Contains(err.Error(), "reached 1 of 2 required replicas (applied on 1") {
		t.Fatalf("write with two of three down: %v", err)
	}
	wantCode(t, err, codes.Unavailable, "not registered")
	// Reads at ONE still work from the survivor.
	g, err := kv.Get(ctx, &kvv1.GetRequest{Key: key("ledger", "before-1", "")})
	if err != nil || !g.Found {
		t.Fatalf("ONE read with one survivor: %v %v", g, err)
	}
}

func TestRouterServesWithoutEtcd(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, Routers: 2, NoSync: true})
	kv, admin := c.Clients(0)
	kv2, _ := c.Clients(1)
	createTable(t, admin, "cache")
	waitFor(t, "table on router 2", func() bool {
		_, err := kv2.Get(context.Background(), &kvv1.GetRequest{Key: key("cache", "x", "")})
		return err == nil
	})
	ctx := context.Background()
	c.Etcd.Close()
	waitFor(t, "routers notice etcd is gone", func() bool {
		st, err := admin.ClusterStatus(ctx, &kvv1.ClusterStatusRequest{})
		return err == nil && st.TopologyStale
	})
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("k%d", i)
		if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: key("cache", k, ""), Value: []byte(k)}); err != nil {
			t.Fatalf("put without etcd: %v", err)
		}
		// QUORUM: a ONE read may hit the replica that has not applied the
		// write yet (W + R must exceed RF for read-your-writes).
		g, err := kv2.Get(ctx, &kvv1.GetRequest{Key: key("cache", k, ""), Consistency: kvv1.Consistency_CONSISTENCY_QUORUM})
		if err != nil || string(g.Value) != k {
			t.Fatalf("get without etcd: %v %v", g, err)
		}
	}
}

func TestClusterStatus(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, Routers: 2, Zones: []string{"z1", "z2", "z3"}, NoSync: true})
	_, admin := c.Clients(1)
	st, err := admin.ClusterStatus(context.Background(), &kvv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Partitions != 64 || st.ReplicationFactor != 3 || st.PlacementEpoch != 1 || len(st.Nodes) != 3 || st.TopologyStale {
		t.Fatalf("status = %v", st)
	}
	var primaries uint32
	for _, n := range st.Nodes {
		if n.State != kvv1.NodeState_NODE_STATE_UP || n.Replicas != 64 {
			t.Fatalf("node %v", n)
		}
		primaries += n.Primaries
	}
	if primaries != 64 {
		t.Fatalf("primaries = %d", primaries)
	}
	if st.ControllerId != "r1" && st.ControllerId != "r2" {
		t.Fatalf("controller = %q", st.ControllerId)
	}
}

func TestControllerFailover(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, Routers: 2, NoSync: true})
	leader := -1
	for i, r := range c.Routers {
		if r.IsController() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no router runs the placement controller")
	}
	other := 1 - leader
	if c.Routers[other].IsController() {
		t.Fatal("both routers claim the controller role")
	}
	c.StopRouter(leader)
	// The survivor takes over once the leader's session is gone (it resigns
	// on a clean stop) and keeps serving the existing placement.
	waitFor(t, "the surviving router to become controller", c.Routers[other].IsController)
	_, admin := c.Clients(other)
	st, err := admin.ClusterStatus(context.Background(), &kvv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.ControllerId != c.Routers[other].ID() || st.PlacementEpoch != 1 {
		t.Fatalf("after failover: controller %q epoch %d", st.ControllerId, st.PlacementEpoch)
	}
}
