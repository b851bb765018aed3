package jobs

import (
	"context"
	"fmt"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"iter"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var testEtcd *etcdembed.Etcd

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobs-etcd-")
	if err != nil {
		panic(err)
	}
	testEtcd, err = etcdembed.Start(etcdembed.Config{Dir: dir, UnsafeNoFsync: true})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	testEtcd.Close()
	os.RemoveAll(dir)
	// After the shared etcd is closed, nothing may be left running.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var clusterSeq atomic.Int64

// newStore returns a store on a fresh cluster name.
func newStore(t *testing.T) *Store {
	t.Helper()
	cli, err := testEtcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return NewStore(cli, fmt.Sprintf("t%d", clusterSeq.Add(1)))
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fakeTarget is an in-memory Veltrix with last-writer-wins versions.
type fakeTarget struct {
	mu      sync.Mutex
	tables  map[string]bool
	items   map[string]fakeItem
	writes  atomic.Int64 // mutations applied or superseded
	delay   time.Duration
	refuse  func(m client.Mutation) bool // InvalidArgument for these
	failFor atomic.Int64                 // Unavailable for this many calls
	// settings are the tables' settings as created or updated (under mu);
	// updates counts UpdateTable calls.
	settings map[string]*kvv1.Table
	updates  int
}

type fakeItem struct {
	key     client.Key
	value   []byte
	expire  time.Time
	version uint64
	deleted bool
}

func newFake() *fakeTarget {
	return &fakeTarget{tables: map[string]bool{}, items: map[string]fakeItem{}, settings: map[string]*kvv1.Table{}}
}

func fkey(k client.Key) string {
	return fmt.Sprintf("%s\x00%d:%s\x00%s", k.Table, len(k.PartitionKey), k.PartitionKey, k.SortKey)
}

func (f *fakeTarget) BatchWriteResults(ctx context.Context, muts []client.Mutation, _ ...client.CallOption) ([]client.WriteResult, error) {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if f.failFor.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "fake: quorum not reached")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range muts {
		if !f.tables[m.Key.Table] {
			return nil, status.Errorf(codes.NotFound, "table %q not found", m.Key.Table)
		}
		if f.refuse != nil && f.refuse(m) {
			return nil, status.Errorf(codes.InvalidArgument, "mutations: fake refuses key %q", m.Key.PartitionKey)
		}
		if m.Version == 0 {
			return nil, status.Error(codes.InvalidArgument, "fake: the migrator must send versions")
		}
	}
	if ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	out := make([]client.WriteResult, len(muts))
	for i, m := range muts {
		k := fkey(m.Key)
		old, ok := f.items[k]
		f.writes.Add(1)
		out[i] = client.WriteResult{Version: m.Version, Applied: true, CurrentVersion: m.Version}
		if ok && (old.version > m.Version || old.version == m.Version && old.deleted && !m.Delete) {
			out[i] = client.WriteResult{Version: m.Version, CurrentVersion: old.version}
			continue
		}
		f.items[k] = fakeItem{key: m.Key, value: m.Value, expire: m.ExpireTime, version: m.Version, deleted: m.Delete}
	}
	return out, nil
}

func (f *fakeTarget) BatchGet(_ context.Context, keys []client.Key, _ ...client.CallOption) ([]client.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]client.Result, len(keys))
	for i, k := range keys {
		it, ok := f.items[fkey(k)]
		out[i].Item = client.Item{Table: k.Table, PartitionKey: k.PartitionKey, SortKey: k.SortKey}
		if ok && !it.deleted && (it.expire.IsZero() || it.expire.After(time.Now())) {
			out[i].Found = true
			out[i].Item.Value, out[i].Item.ExpireTime, out[i].Item.Version = it.value, it.expire, it.version
		}
	}
	return out, nil
}

func (f *fakeTarget) Scan(_ context.Context, table string, segment, total int) iter.Seq2[client.Item, error] {
	return func(yield func(client.Item, error) bool) {
		f.mu.Lock()
		var items []client.Item
		for k, it := range f.items {
			if it.key.Table != table || it.deleted || len(k)%max(total, 1) != segment {
				continue
			}
			items = append(items, client.Item{Table: table, PartitionKey: it.key.PartitionKey, SortKey: it.key.SortKey, Value: it.value, ExpireTime: it.expire, Version: it.version})
		}
		f.mu.Unlock()
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
	}
}

func (f *fakeTarget) DescribeTable(_ context.Context, name string) (*kvv1.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tables[name] {
		return nil, status.Errorf(codes.NotFound, "table %q not found", name)
	}
	return f.tableLocked(name), nil
}

// tableLocked is the table's settings (none recorded: a plain table).
func (f *fakeTarget) tableLocked(name string) *kvv1.Table {
	if t := f.settings[name]; t != nil {
		return proto.Clone(t).(*kvv1.Table)
	}
	return &kvv1.Table{Name: name}
}

// table returns a table's settings as DescribeTable does.
func (f *fakeTarget) table(name string) *kvv1.Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tableLocked(name)
}

// setTable creates a table with settings t.
func (f *fakeTarget) setTable(t *kvv1.Table) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[t.GetName()] = true
	f.settings[t.GetName()] = t
}

func (f *fakeTarget) CreateTable(_ context.Context, name string, opts ...client.TableOption) (*kvv1.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tables[name] {
		return nil, status.Errorf(codes.AlreadyExists, "table %q exists", name)
	}
	req := &kvv1.CreateTableRequest{Name: name}
	for _, o := range opts {
		o(req)
	}
	f.tables[name] = true
	f.settings[name] = &kvv1.Table{Name: name, KeySchema: req.GetKeySchema(), DefaultTtl: req.GetDefaultTtl()}
	return f.tableLocked(name), nil
}

func (f *fakeTarget) UpdateTable(_ context.Context, name string, opts ...client.UpdateOption) (*kvv1.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tables[name] {
		return nil, status.Errorf(codes.NotFound, "table %q not found", name)
	}
	req := &kvv1.UpdateTableRequest{Name: name}
	for _, o := range opts {
		o(req)
	}
	t := f.tableLocked(name)
	if req.TtlAttribute != nil {
		t.TtlAttribute = req.GetTtlAttribute()
	}
	f.settings[name] = t
	f.updates++
	return f.tableLocked(name), nil
}

// live returns the live items of a table by "pk|sk".
func (f *fakeTarget) live(table string) map[string]fakeItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]fakeItem{}
	for _, it := range f.items {
		if it.key.Table == table && !it.deleted {
			sk := string(it.key.SortKey)
			if n, err := ddb.DecodeNumberKey(it.key.SortKey); err == nil {
				sk = n.String() // the test tables' sort keys are numbers
			}
			out[string(it.key.PartitionKey)+"|"+sk] = it
		}
	}
	return out
}

// numKey is the stored sort key of the number s.
func numKey(s string) []byte { return ddb.EncodeNumberKey(ddb.MustN(s)) }

func (f *fakeTarget) put(it fakeItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[fkey(it.key)] = it
}

// staticAWS is the AWS configuration of tests: fake credentials (the
// clients jobs build set their own retryer).
func staticAWS(context.Context, *migratorv1.AwsOptions) (aws.Config, error) {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", "")}, nil
}

// migrator is one manager over the fake target.
type migrator struct {
	env *Env
	mgr *Manager
}

func startMigrator(t *testing.T, store *Store, target Target, id string) *migrator {
	t.Helper()
	return startMigratorEnv(t, store, target, id, nil)
}

// startMigratorEnv is startMigrator with configure's changes to the Env.
func startMigratorEnv(t *testing.T, store *Store, target Target, id string, configure func(*Env)) *migrator {
	t.Helper()
	env := &Env{Store: store, Target: target, ID: id, Logger: testLogger(t).With("migrator", id), PollInterval: 50 * time.Millisecond,
		WriteRetry: 5 * time.Second, AWSConfig: staticAWS,
		StreamOptions: cdc.Options{PollInterval: 10 * time.Millisecond, DiscoveryInterval: 50 * time.Millisecond,
			MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}}
	if configure != nil {
		configure(env)
	}
	mgr, err := StartManager(env, ManagerOptions{SessionTTL: 2 * time.Second, RescanInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := &migrator{env: env, mgr: mgr}
	t.Cleanup(m.close)
	return m
}

func (m *migrator) close() {
	if m.mgr != nil {
		m.mgr.Close()
		m.mgr = nil
	}
}

func createJob(t *testing.T, store *Store, j *migratorv1.Job) *migratorv1.Job {
	t.Helper()
	if j.Id == "" {
		j.Id = fmt.Sprintf("job-%d", clusterSeq.Add(1))
	}
	j.State = migratorv1.JobState_JOB_STATE_PENDING
	j.CreateTime = timestamppb.Now()
	out, _, err := store.Create(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitJob waits until the job ends and returns it with its progress.
func waitJob(t *testing.T, store *Store, id string, timeout time.Duration) *migratorv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if Terminal(j.GetState()) {
			agg, err := store.Aggregate(context.Background(), j)
			if err != nil {
				t.Fatal(err)
			}
			return agg
		}
		if time.Now().After(deadline) {
			agg, _ := store.Aggregate(context.Background(), j)
			t.Fatalf("job %s still %s after %s: %v", id, j.GetState(), timeout, agg.GetProgress())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allRejects(t *testing.T, store *Store, id string) []*migratorv1.Reject {
	t.Helper()
	var out []*migratorv1.Reject
	tok := ""
	for {
		rs, next, err := store.ListRejects(context.Background(), id, 3, tok)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
		if next == "" {
			return out
		}
		tok = next
	}
}

func rejectSummary(rs []*migratorv1.Reject) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%d", r.GetSource(), r.GetLine()))
	}
	sort.Strings(out)
	return out
}

var _ = clientv3.NoLease
