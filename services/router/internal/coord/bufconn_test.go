package coord

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// action decides how one storage call goes before the node does its work:
// nil to go on, or the error to answer with.
type action func(ctx context.Context) error

// failWith answers err.
func failWith(err error) action { return func(context.Context) error { return err } }

// hang never answers: it waits for the caller to give up and reports the
// node's id on cancelled (when not nil) once its context ended.
func hang(id string, cancelled chan<- string) action {
	return func(ctx context.Context) error {
		<-ctx.Done()
		if cancelled != nil {
			cancelled <- id
		}
		return status.FromContextError(ctx.Err()).Err()
	}
}

// waitFor answers after ch is closed (or fails when the caller gives up).
func waitFor(ch <-chan struct{}) action {
	return func(ctx context.Context) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// script hands out actions in the order calls arrive, over every node
// that shares it: the first call to reach any node gets acts[0], and so
// on; calls past the end go on. It makes "the replica asked first"
// deterministic although the coordinator picks it at random.
type script struct {
	mu      sync.Mutex
	acts    []action
	n       int
	arrived chan string // node ids in arrival order (buffered)
}

func newScript(acts ...action) *script {
	return &script{acts: acts, arrived: make(chan string, 64)}
}

func (s *script) next(id string) action {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.arrived <- id:
	default:
	}
	s.n++
	if s.n <= len(s.acts) {
		return s.acts[s.n-1]
	}
	return nil
}

// storeNode is a storage node served over bufconn: real gRPC, in memory.
// It keeps the newest version of each key and answers Read, BatchRead,
// Scan, Apply and StoreHints from it after its action (or its script's)
// let the call through.
type storeNode struct {
	storagev1.UnimplementedStorageServiceServer
	id string

	mu     sync.Mutex
	act    action  // every call's action, unless script is set
	script *script // shared with other nodes
	recs   map[string]*storagev1.Record
	calls  map[string]int
	// applies are the Apply requests received, answered or not.
	applies []*storagev1.ApplyRequest
	// applied receives every Apply request the node stored (buffered).
	applied chan *storagev1.ApplyRequest
	// shortOutcomes makes Apply answer one outcome too few.
	shortOutcomes bool
}

func recKey(k *storagev1.Key) string {
	return fmt.Sprintf("%d/%d/%q/%q", k.GetPartition(), k.GetTableId(), k.GetPartitionKey(), k.GetSortKey())
}

// set changes the node's action for the calls that follow.
func (n *storeNode) set(a action) {
	n.mu.Lock()
	n.act = a
	n.mu.Unlock()
}

// put stores recs as if they had been written earlier.
func (n *storeNode) put(recs ...*storagev1.Record) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range recs {
		n.recs[recKey(r.GetKey())] = r
	}
}

// get returns the node's record of k, or nil.
func (n *storeNode) get(k *storagev1.Key) *storagev1.Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.recs[recKey(k)]
}

func (n *storeNode) count(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[method]
}

func (n *storeNode) enter(ctx context.Context, method string) error {
	n.mu.Lock()
	n.calls[method]++
	a, sc := n.act, n.script
	n.mu.Unlock()
	if sc != nil {
		a = sc.next(n.id)
	}
	if a == nil {
		return nil
	}
	return a(context.WithValue(ctx, nodeKey{}, n.id))
}

type nodeKey struct{}

// nodeOf returns the id of the node an action runs on.
func nodeOf(ctx context.Context) string { id, _ := ctx.Value(nodeKey{}).(string); return id }

func (n *storeNode) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	if err := n.enter(ctx, "Read"); err != nil {
		return nil, err
	}
	if r := n.get(req.GetKey()); r != nil {
		return &storagev1.ReadResponse{Found: true, Record: keyless(r)}, nil
	}
	return &storagev1.ReadResponse{}, nil
}

// keyless is r as storage nodes answer reads: without its key.
func keyless(r *storagev1.Record) *storagev1.Record {
	c := proto.CloneOf(r)
	c.Key = nil
	return c
}

func (n *storeNode) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	if err := n.enter(ctx, "BatchRead"); err != nil {
		return nil, err
	}
	resp := &storagev1.BatchReadResponse{}
	for _, k := range req.GetKeys() {
		res := &storagev1.ReadResponse{}
		if r := n.get(k); r != nil {
			res.Found, res.Record = true, keyless(r)
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

func (n *storeNode) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	n.mu.Lock()
	n.applies = append(n.applies, req)
	n.mu.Unlock()
	if err := n.enter(ctx, "Apply"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		k := recKey(r.GetKey())
		cur := n.recs[k]
		if cur == nil || r.GetVersion() > cur.GetVersion() {
			n.recs[k] = r
			resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
			resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
			continue
		}
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_SUPERSEDED)
		resp.CurrentVersions = append(resp.CurrentVersions, cur.GetVersion())
	}
	short := n.shortOutcomes
	n.mu.Unlock()
	select {
	case n.applied <- req:
	default:
	}
	if short {
		resp.Outcomes = resp.Outcomes[1:]
	}
	return resp, nil
}

// Scan returns one partition key's records in [Start, End) with Prefix,
// in sort-key order (reversed if asked), at most Limit of them with a
// resume token when more follow. It ignores Resume: the coordinator pages
// by Start and End.
func (n *storeNode) Scan(ctx context.Context, req *storagev1.ScanRequest) (*storagev1.ScanResponse, error) {
	if err := n.enter(ctx, "Scan"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	var out []*storagev1.Record
	for _, r := range n.recs {
		k := r.GetKey()
		sk := k.GetSortKey()
		switch {
		case k.GetPartition() != req.GetPartition(), k.GetTableId() != req.GetTableId(),
			!bytes.Equal(k.GetPartitionKey(), req.GetPartitionKey()),
			!bytes.HasPrefix(sk, req.GetPrefix()),
			bytes.Compare(sk, req.GetStart()) < 0,
			len(req.GetEnd()) > 0 && bytes.Compare(sk, req.GetEnd()) >= 0,
			r.GetTombstone() && !req.GetIncludeTombstones():
			continue
		}
		out = append(out, r)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b *storagev1.Record) int {
		c := bytes.Compare(a.GetKey().GetSortKey(), b.GetKey().GetSortKey())
		if req.GetReverse() {
			return -c
		}
		return c
	})
	resp := &storagev1.ScanResponse{Records: out}
	if l := int(req.GetLimit()); l > 0 && len(out) > l {
		resp.Records = out[:l]
		resp.Resume = []byte("more")
	}
	return resp, nil
}

func (n *storeNode) StoreHints(ctx context.Context, req *storagev1.StoreHintsRequest) (*storagev1.StoreHintsResponse, error) {
	if err := n.enter(ctx, "StoreHints"); err != nil {
		return nil, err
	}
	return &storagev1.StoreHintsResponse{}, nil
}

// serveNode serves a new storeNode over bufconn until the test ends and
// returns it with a cluster.Node connected to it (connection ready, so no
// first call pays for the handshake).
func serveNode(t *testing.T, id string) (*storeNode, *cluster.Node) {
	t.Helper()
	sn := &storeNode{id: id, recs: map[string]*storagev1.Record{}, calls: map[string]int{}, applied: make(chan *storagev1.ApplyRequest, 256)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	storagev1.RegisterStorageServiceServer(srv, sn)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///"+id,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop() // cancels calls still held by actions
		<-served
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("%s: connection not ready: %s", id, s)
		}
	}
	return sn, &cluster.Node{ID: id, Client: storagev1.NewStorageServiceClient(conn)}
}

// grid is a set of storage nodes over bufconn and a static cluster
// placing partitions on them.
type grid struct {
	nodes map[string]*storeNode
	cn    map[string]*cluster.Node
	m     *Metrics
	co    *Coordinator
}

// noHedge keeps hedges out of tests that count calls: their first
// replica always answers well within a minute.
const noHedge = time.Minute

// newGrid serves ids over bufconn and places partition p on replicas[p]
// (ids left out of ids are not registered). opts.Metrics and
// opts.Logger are filled in.
func newGrid(t *testing.T, ids []string, replicas [][]string, opts Options) *grid {
	t.Helper()
	g := &grid{nodes: map[string]*storeNode{}, cn: map[string]*cluster.Node{}, m: NewMetrics(nil)}
	for _, id := range ids {
		g.nodes[id], g.cn[id] = serveNode(t, id)
	}
	reps := make([][]*cluster.Node, len(replicas))
	for p, set := range replicas {
		for _, id := range set {
			reps[p] = append(reps[p], g.cn[id]) // nil when not served
		}
	}
	c := cluster.NewStatic(uint32(len(replicas)), replicas, reps)
	opts.Metrics = g.m
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g.co = New(c, opts)
	return g
}

// shareScript makes every node take its actions from sc.
func (g *grid) shareScript(sc *script) {
	for _, n := range g.nodes {
		n.mu.Lock()
		n.script = sc
		n.mu.Unlock()
	}
}

// calls sums method's calls over every node.
func (g *grid) calls(method string) int {
	total := 0
	for _, n := range g.nodes {
		total += n.count(method)
	}
	return total
}

// key returns a key of partition p.
func key(p uint32, pk string) *storagev1.Key {
	return &storagev1.Key{Partition: p, TableId: 1, PartitionKey: []byte(pk)}
}

func record(k *storagev1.Key, version uint64) *storagev1.Record {
	return &storagev1.Record{Key: k, Version: version, Value: fmt.Appendf(nil, "v%d", version)}
}

// waitCalls waits (at most 5s) until n received want calls of method:
// stragglers of a write that already returned.
func waitCalls(t *testing.T, n *storeNode, method string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.count(method) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s calls, want %d", n.id, n.count(method), method, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits (at most 5s) for a value from ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
