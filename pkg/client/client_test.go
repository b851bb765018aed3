package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const table = "t1"

// setup starts n fake routers over a store holding table and a client of
// them with fast backoff, and waits until the client is connected to every
// router, so that calls are spread over all of them.
func setup(t *testing.T, n int, opts ...client.Option) (*client.Client, []*fakeRouter) {
	t.Helper()
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	fs := startFakes(t, st, n)
	c := newClient(t, addrs(fs), opts...)
	deadline := time.Now().Add(5 * time.Second)
	for !allCalled(fs) {
		if time.Now().After(deadline) {
			t.Fatal("calls never reached every router")
		}
		if _, _, err := c.Get(t.Context(), table, []byte("warm-up"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fs {
		f.calls.Store(0)
		f.takeRequests()
	}
	return c, fs
}

func allCalled(fs []*fakeRouter) bool {
	for _, f := range fs {
		if f.calls.Load() == 0 {
			return false
		}
	}
	return true
}

func newClient(t *testing.T, endpoints []string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	opts = append([]client.Option{client.WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := client.New(ctx, endpoints, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func failWith(code codes.Code) func(context.Context, string) error {
	var n atomic.Int64
	return func(context.Context, string) error {
		return status.Errorf(code, "injected %v #%d", code, n.Add(1))
	}
}

func totalCalls(fs []*fakeRouter) int64 {
	var n int64
	for _, f := range fs {
		n += f.calls.Load()
	}
	return n
}

func TestRoundRobin(t *testing.T) {
	c, fs := setup(t, 2)
	for i := range 100 {
		if _, _, err := c.Get(t.Context(), table, fmt.Appendf(nil, "k%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range fs {
		if n := f.calls.Load(); n < 45 || n > 55 {
			t.Errorf("router %d served %d of 100 calls, want about 50", i, n)
		}
	}
}

func TestRetryOnAnotherRouter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakFn func(*fakeRouter)
	}{
		{"returns Unavailable", func(f *fakeRouter) { f.setFail(failWith(codes.Unavailable)) }},
		{"stopped", func(f *fakeRouter) { f.srv.Stop() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fs := setup(t, 2)
			tc.breakFn(fs[0])
			for i := range 20 {
				if _, err := c.Put(t.Context(), table, fmt.Appendf(nil, "k%d", i), nil, []byte("v")); err != nil {
					t.Fatalf("put %d: %v", i, err)
				}
			}
			if n := fs[1].calls.Load(); n != 20 {
				t.Errorf("healthy router served %d calls, want 20", n)
			}
			if tc.name == "returns Unavailable" {
				// Round robin alternates, so nearly every call tried the
				// broken router first and was retried on the other.
				if n := fs[0].calls.Load(); n < 10 {
					t.Errorf("broken router saw %d calls, want at least 10", n)
				}
			}
		})
	}
}

func TestRetryTransientOnOneRouter(t *testing.T) {
	c, fs := setup(t, 1)
	var n atomic.Int64
	fs[0].setFail(func(context.Context, string) error {
		if n.Add(1) <= 2 {
			return status.Error(codes.Unavailable, "quorum not reached")
		}
		return nil
	})
	if _, err := c.Put(t.Context(), table, []byte("k"), nil, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := fs[0].calls.Load(); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
}

func TestGiveUpAfterMaxRetries(t *testing.T) {
	for _, retries := range []int{0, 1, 3} {
		t.Run(fmt.Sprint(retries), func(t *testing.T) {
			c, fs := setup(t, 2, client.WithMaxRetries(retries))
			fail := failWith(codes.Unavailable) // one counter across both routers
			for _, f := range fs {
				f.setFail(fail)
			}
			_, _, err := c.Get(t.Context(), table, []byte("k"), nil)
			if !client.IsUnavailable(err) {
				t.Fatalf("err = %v, want Unavailable", err)
			}
			if got, want := totalCalls(fs), int64(retries+1); got != want {
				t.Errorf("%d attempts, want %d", got, want)
			}
			if last := fmt.Sprintf("injected Unavailable #%d", retries+1); !strings.Contains(err.Error(), last) {
				t.Errorf("err = %v, want the last error (%s)", err, last)
			}
			if retries > 0 && !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", retries+1)) {
				t.Errorf("err = %v, want the attempt count", err)
			}
		})
	}
}

func TestNoRetryOfOtherCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.DeadlineExceeded, codes.ResourceExhausted, codes.NotFound, codes.Internal} {
		t.Run(code.String(), func(t *testing.T) {
			c, fs := setup(t, 2)
			for _, f := range fs {
				f.setFail(failWith(code))
			}
			_, err := c.Put(t.Context(), table, []byte("k"), nil, []byte("v"))
			if got := status.Code(err); got != code {
				t.Fatalf("code %v (%v), want %v", got, err, code)
			}
			if n := totalCalls(fs); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
		})
	}
}

func TestContextStopsRetries(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) (context.Context, context.CancelFunc)
		want codes.Code
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 100*time.Millisecond)
		}, codes.DeadlineExceeded},
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Backoff up to 2s: without honouring ctx the call would take
			// seconds.
			c, fs := setup(t, 2, client.WithMaxRetries(1000), client.WithBackoff(time.Second, 2*time.Second))
			for _, f := range fs {
				f.setFail(failWith(codes.Unavailable))
			}
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()
			start := time.Now()
			_, _, err := c.Get(ctx, table, []byte("k"), nil)
			if el := time.Since(start); el > 700*time.Millisecond {
				t.Errorf("returned after %v, want promptly after 100ms", el)
			}
			if got := status.Code(err); got != tc.want {
				t.Errorf("code %v (%v), want %v", got, err, tc.want)
			}
			if !strings.Contains(err.Error(), "injected Unavailable") {
				t.Errorf("err = %v, want the failure being retried", err)
			}
		})
	}
}

func TestDefaultTimeout(t *testing.T) {
	c, fs := setup(t, 1, client.WithDefaultTimeout(100*time.Millisecond))
	fs[0].setFail(func(ctx context.Context, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	})
	start := time.Now()
	_, _, err := c.Get(context.Background(), table, []byte("k"), nil)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v, want about 100ms", el)
	}
}

func TestRawClientsRetry(t *testing.T) {
	c, fs := setup(t, 1)
	var n atomic.Int64
	fs[0].setFail(func(context.Context, string) error {
		if n.Add(1) == 1 {
			return status.Error(codes.Unavailable, "transient")
		}
		return nil
	})
	if _, err := c.KV().Put(t.Context(), &kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: []byte("k")}}); err != nil {
		t.Fatal(err)
	}
	n.Store(0)
	if _, err := c.Admin().ListTables(t.Context(), &kvv1.ListTablesRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := fs[0].calls.Load(); got != 4 {
		t.Errorf("%d attempts, want 4", got)
	}
}

func TestErrorsKeepStatus(t *testing.T) {
	c, _ := setup(t, 1)
	_, _, err := c.Get(t.Context(), "nope", []byte("user-1"), []byte("cart"))
	if !client.IsNotFound(err) || status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.NotFound {
		t.Errorf("status.FromError = %v, %v", s, ok)
	}
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) {
		t.Error("errors.As finds no gRPC status")
	}
	for _, want := range []string{"get", `table "nope"`, `"user-1"`, `"cart"`, `table "nope" not found`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to mention %s", err, want)
		}
	}
	if client.IsUnavailable(err) || client.IsNotFound(nil) {
		t.Error("IsUnavailable(NotFound) or IsNotFound(nil)")
	}
}

func TestGetPutDelete(t *testing.T) {
	c, _ := setup(t, 2)
	ctx := t.Context()
	put, err := c.Put(ctx, table, []byte("pk"), []byte("sk"), []byte("v1"))
	if err != nil || !put.Applied || put.CurrentVersion != put.Version {
		t.Fatalf("put = %+v, %v", put, err)
	}
	item, found, err := c.Get(ctx, table, []byte("pk"), []byte("sk"))
	if err != nil || !found || string(item.Value) != "v1" || item.Version != put.Version || !item.ExpireTime.IsZero() {
		t.Fatalf("get = %+v, %v, %v", item, found, err)
	}
	if item.Table != table || string(item.PartitionKey) != "pk" || string(item.SortKey) != "sk" {
		t.Errorf("item key = %+v", item.Key())
	}
	if _, err := c.Delete(ctx, table, []byte("pk"), []byte("sk")); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(ctx, table, []byte("pk"), []byte("sk")); err != nil || found {
		t.Fatalf("get after delete: found %v, %v", found, err)
	}
}

func TestCallOptions(t *testing.T) {
	c, fs := setup(t, 1, client.WithWriteConsistency(kvv1.Consistency_CONSISTENCY_ONE), client.WithReadConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
	ctx := t.Context()
	pk := []byte("pk")
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)

	before := time.Now()
	if _, err := c.Put(ctx, table, pk, []byte("ttl"), []byte("v"), client.WithTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	item, _, err := c.Get(ctx, table, pk, []byte("ttl"))
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := before.Add(time.Hour), time.Now().Add(time.Hour); item.ExpireTime.Before(lo) || item.ExpireTime.After(hi) {
		t.Errorf("WithTTL(1h): expire time %v, want in [%v, %v]", item.ExpireTime, lo, hi)
	}

	v, err := c.Put(ctx, table, pk, []byte("exp"), []byte("v"), client.WithExpireTime(exp), client.WithVersion(42), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL))
	if err != nil || v.Version != 42 {
		t.Fatalf("put with version 42 = %+v, %v", v, err)
	}
	if _, err := c.Delete(ctx, table, pk, []byte("gone"), client.WithVersion(43)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, table, pk, []byte("default"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, table, pk, []byte("default"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL)); err != nil {
		t.Fatal(err)
	}
	want := []proto.Message{
		&kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("ttl")}, Value: []byte("v"), Consistency: kvv1.Consistency_CONSISTENCY_ONE},
		&kvv1.GetRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("ttl")}, Consistency: kvv1.Consistency_CONSISTENCY_QUORUM},
		&kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("exp")}, Value: []byte("v"), Version: 42, Consistency: kvv1.Consistency_CONSISTENCY_ALL},
		&kvv1.DeleteRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("gone")}, Version: 43, Consistency: kvv1.Consistency_CONSISTENCY_ONE},
		&kvv1.PutRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("default")}, Value: []byte("v"), Consistency: kvv1.Consistency_CONSISTENCY_ONE},
		&kvv1.GetRequest{Key: &kvv1.Key{Table: table, PartitionKey: pk, SortKey: []byte("default")}, Consistency: kvv1.Consistency_CONSISTENCY_ALL},
	}
	got := fs[0].takeRequests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i := range want {
		if p, ok := got[i].(*kvv1.PutRequest); ok {
			// Expiry checked separately: WithTTL's depends on the clock.
			switch string(p.Key.SortKey) {
			case "ttl":
				if p.ExpireTime == nil {
					t.Errorf("WithTTL sent no expire_time")
				}
			case "exp":
				if !p.ExpireTime.AsTime().Equal(exp) {
					t.Errorf("WithExpireTime sent %v, want %v", p.ExpireTime.AsTime(), exp)
				}
			}
			p.ExpireTime = nil
		}
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("request %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestInvalidCallOptions(t *testing.T) {
	c, fs := setup(t, 1)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"TTL on Get", func() error {
			_, _, err := c.Get(ctx, table, []byte("k"), nil, client.WithTTL(time.Hour))
			return err
		}, "WithTTL does not apply to Get"},
		{"TTL and expire time", func() error {
			_, err := c.Put(ctx, table, []byte("k"), nil, nil, client.WithTTL(time.Hour), client.WithExpireTime(time.Now()))
			return err
		}, "WithTTL and WithExpireTime together"},
		{"zero version", func() error {
			_, err := c.Delete(ctx, table, []byte("k"), nil, client.WithVersion(0))
			return err
		}, "version must be non-zero"},
		{"negative TTL", func() error {
			_, err := c.Put(ctx, table, []byte("k"), nil, nil, client.WithTTL(-time.Second))
			return err
		}, "must be positive"},
		{"version on BatchWrite", func() error {
			_, err := c.BatchWrite(ctx, nil, client.WithVersion(3))
			return err
		}, "WithVersion does not apply to BatchWrite"},
		{"unknown consistency", func() error {
			_, _, err := c.Get(ctx, table, []byte("k"), nil, client.WithConsistency(9))
			return err
		}, "unknown consistency 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want InvalidArgument mentioning %q", err, tc.want)
			}
		})
	}
	if n := fs[0].calls.Load(); n != 0 {
		t.Errorf("invalid calls reached the router %d times", n)
	}
}

func TestQuery(t *testing.T) {
	c, fs := setup(t, 1)
	ctx := t.Context()
	pk := []byte("user-1")
	var all []string
	for i := range 25 {
		sk := fmt.Sprintf("k%02d", i)
		all = append(all, sk)
		if _, err := c.Put(ctx, table, pk, []byte(sk), []byte("v"+sk)); err != nil {
			t.Fatal(err)
		}
	}
	// Another partition key, which no query may return.
	if _, err := c.Put(ctx, table, []byte("user-2"), []byte("k00"), nil); err != nil {
		t.Fatal(err)
	}
	fs[0].takeRequests()
	reversed := func(s []string) []string {
		var out []string
		for i := len(s) - 1; i >= 0; i-- {
			out = append(out, s[i])
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		q      client.QueryOptions
		stop   int // break after this many items; 0 never
		want   []string
		limits []uint32 // the limit of each page request
	}{
		{"all", client.QueryOptions{}, 0, all, []uint32{0}},
		{"pages", client.QueryOptions{PageSize: 7}, 0, all, []uint32{7, 7, 7, 7}},
		{"reverse pages", client.QueryOptions{PageSize: 7, Reverse: true}, 0, reversed(all), []uint32{7, 7, 7, 7}},
		{"limit across pages", client.QueryOptions{PageSize: 7, Limit: 10}, 0, all[:10], []uint32{7, 3}},
		{"reverse limit", client.QueryOptions{PageSize: 4, Limit: 6, Reverse: true}, 0, reversed(all)[:6], []uint32{4, 2}},
		{"limit without page size", client.QueryOptions{Limit: 5}, 0, all[:5], []uint32{5}},
		{"limit equal to page", client.QueryOptions{PageSize: 5, Limit: 5}, 0, all[:5], []uint32{5}},
		{"prefix", client.QueryOptions{Prefix: []byte("k1"), PageSize: 3}, 0, all[10:20], []uint32{3, 3, 3, 3}},
		{"range", client.QueryOptions{Start: []byte("k05"), End: []byte("k10"), PageSize: 2}, 0, all[5:10], []uint32{2, 2, 2}},
		{"break early", client.QueryOptions{PageSize: 7}, 3, all[:3], []uint32{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for item, err := range c.Query(ctx, table, pk, tc.q) {
				if err != nil {
					t.Fatal(err)
				}
				if string(item.PartitionKey) != "user-1" || item.Table != table || string(item.Value) != "v"+string(item.SortKey) {
					t.Fatalf("item %+v", item)
				}
				got = append(got, string(item.SortKey))
				if len(got) == tc.stop {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			var limits []uint32
			consumed := 0 // items returned by the pages before this one, all full
			for i, r := range fs[0].takeRequests() {
				q := r.(*kvv1.QueryRequest)
				limits = append(limits, q.Limit)
				if i > 0 && string(q.PageToken) != got[consumed-1] {
					t.Errorf("page %d token %q, want the previous page's last sort key %q", i, q.PageToken, got[consumed-1])
				}
				if i == 0 && q.PageToken != nil {
					t.Errorf("first page has token %q", q.PageToken)
				}
				consumed += int(q.Limit)
			}
			if fmt.Sprint(limits) != fmt.Sprint(tc.limits) {
				t.Errorf("page limits %v, want %v", limits, tc.limits)
			}
		})
	}
}

func TestQueryErrors(t *testing.T) {
	c, fs := setup(t, 2)
	ctx := t.Context()
	for i := range 10 {
		if _, err := c.Put(ctx, table, []byte("pk"), fmt.Appendf(nil, "%02d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Every other call fails: each page is retried on its own.
	var n atomic.Int64
	for _, f := range fs {
		f.setFail(func(context.Context, string) error {
			if n.Add(1)%2 == 1 {
				return status.Error(codes.Unavailable, "flaky")
			}
			return nil
		})
	}
	count := 0
	for _, err := range c.Query(ctx, table, []byte("pk"), client.QueryOptions{PageSize: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		count++
	}
	if count != 10 {
		t.Errorf("%d items through a flaky router, want 10", count)
	}
	for _, f := range fs {
		f.setFail(nil)
	}

	for _, tc := range []struct {
		name  string
		table string
		q     client.QueryOptions
		code  codes.Code
	}{
		{"unknown table", "nope", client.QueryOptions{}, codes.NotFound},
		{"prefix and range", table, client.QueryOptions{Prefix: []byte("a"), Start: []byte("a")}, codes.InvalidArgument},
		{"negative limit", table, client.QueryOptions{Limit: -1}, codes.InvalidArgument},
		{"page too large", table, client.QueryOptions{PageSize: 10001}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := 0
			for item, err := range c.Query(ctx, tc.table, []byte("pk"), tc.q) {
				if err == nil {
					t.Fatalf("item %+v, want an error", item)
				}
				errs++
				if status.Code(err) != tc.code {
					t.Errorf("err = %v, want %v", err, tc.code)
				}
			}
			if errs != 1 {
				t.Errorf("%d errors, want 1", errs)
			}
		})
	}
}

func TestBatchChunks(t *testing.T) {
	c, fs := setup(t, 1)
	ctx := t.Context()
	const n = 2500
	muts := make([]client.Mutation, n)
	keys := make([]client.Key, n+1)
	for i := range muts {
		keys[i] = client.Key{Table: table, PartitionKey: fmt.Appendf(nil, "pk%04d", i)}
		muts[i] = client.Mutation{Key: keys[i], Value: fmt.Appendf(nil, "v%d", i)}
	}
	muts[7].Delete = true
	keys[n] = client.Key{Table: table, PartitionKey: []byte("missing")}

	versions, err := c.BatchWrite(ctx, muts)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != n {
		t.Fatalf("%d versions, want %d", len(versions), n)
	}
	for i := 1; i < n; i++ {
		if versions[i] <= versions[i-1] {
			t.Fatalf("versions out of order at %d: %d after %d", i, versions[i], versions[i-1])
		}
	}
	var sizes []int
	for _, r := range fs[0].takeRequests() {
		sizes = append(sizes, len(r.(*kvv1.BatchWriteRequest).Mutations))
	}
	if fmt.Sprint(sizes) != "[1000 1000 500]" {
		t.Errorf("batch write chunks %v, want [1000 1000 500]", sizes)
	}

	results, err := c.BatchGet(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != n+1 {
		t.Fatalf("%d results, want %d", len(results), n+1)
	}
	for i, r := range results {
		wantFound := i != 7 && i != n
		if r.Found != wantFound || string(r.Item.PartitionKey) != string(keys[i].PartitionKey) {
			t.Fatalf("result %d = %+v, want found %v", i, r, wantFound)
		}
		if wantFound && (string(r.Item.Value) != fmt.Sprintf("v%d", i) || r.Item.Version != versions[i]) {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	sizes = nil
	for _, r := range fs[0].takeRequests() {
		sizes = append(sizes, len(r.(*kvv1.BatchGetRequest).Keys))
	}
	if fmt.Sprint(sizes) != "[1000 1000 501]" {
		t.Errorf("batch get chunks %v, want [1000 1000 501]", sizes)
	}

	// A failing chunk is named; the chunks after it are not sent.
	var calls atomic.Int64
	fs[0].setFail(func(context.Context, string) error {
		if calls.Add(1) == 2 {
			return status.Error(codes.ResourceExhausted, "rate limited")
		}
		return nil
	})
	_, err = c.BatchWrite(ctx, muts)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "[1000, 2000) of 2500") {
		t.Errorf("err = %v, want ResourceExhausted naming the chunk", err)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d calls, want 2", got)
	}

	if v, err := c.BatchWrite(ctx, nil); err != nil || len(v) != 0 {
		t.Errorf("empty batch write = %v, %v", v, err)
	}
}

func TestScan(t *testing.T) {
	c, fs := setup(t, 1)
	ctx := t.Context()
	want := map[string]bool{}
	for i := range 30 {
		pk, sk := fmt.Sprintf("pk%d", i%7), fmt.Sprintf("sk%d", i)
		want[pk+"/"+sk] = true
		if _, err := c.Put(ctx, table, []byte(pk), []byte(sk), nil); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(seg, total int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for item, err := range c.Scan(ctx, table, seg, total) {
			if err != nil {
				t.Fatal(err)
			}
			got[string(item.PartitionKey)+"/"+string(item.SortKey)]++
		}
		return got
	}
	check := func(got map[string]int) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%d distinct items, want %d", len(got), len(want))
		}
		for k, n := range got {
			if !want[k] || n != 1 {
				t.Errorf("item %s seen %d times", k, n)
			}
		}
	}

	t.Run("whole table", func(t *testing.T) {
		check(scan(0, 1))
	})
	t.Run("segments", func(t *testing.T) {
		all := map[string]int{}
		for seg := range 3 {
			for k, n := range scan(seg, 3) {
				all[k] += n
			}
		}
		check(all)
	})
	t.Run("resumes after Unavailable", func(t *testing.T) {
		fs[0].takeRequests()
		fs[0].scanFailAfter.Store(2)
		check(scan(0, 0))
		reqs := fs[0].takeRequests()
		if len(reqs) != 2 || len(reqs[1].(*kvv1.ScanRequest).PageToken) == 0 {
			t.Errorf("scan requests %v, want a second one resuming from a page token", reqs)
		}
	})
	t.Run("break early", func(t *testing.T) {
		n := 0
		for _, err := range c.Scan(ctx, table, 0, 1) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 5 {
				break
			}
		}
	})
	t.Run("gives up", func(t *testing.T) {
		fs[0].setFail(failWith(codes.Unavailable))
		defer fs[0].setFail(nil)
		var errs []error
		for _, err := range c.Scan(ctx, table, 0, 1) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !client.IsUnavailable(errs[0]) {
			t.Errorf("errors %v, want one Unavailable", errs)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			table      string
			seg, total int
			code       codes.Code
		}{
			{"nope", 0, 1, codes.NotFound},
			{table, 3, 3, codes.InvalidArgument},
			{table, -1, 3, codes.InvalidArgument},
			{table, 1, 0, codes.InvalidArgument},
		} {
			var errs []error
			for _, err := range c.Scan(ctx, tc.table, tc.seg, tc.total) {
				errs = append(errs, err)
			}
			if len(errs) != 1 || status.Code(errs[0]) != tc.code {
				t.Errorf("scan %q %d/%d: errors %v, want one %v", tc.table, tc.seg, tc.total, errs, tc.code)
			}
		}
	})
}

func TestAdmin(t *testing.T) {
	c, _ := setup(t, 2)
	ctx := t.Context()
	tb, err := c.CreateTable(ctx, "sessions", client.WithDefaultTTL(time.Hour),
		client.WithKeySchema(&kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: "id", Type: kvv1.AttributeType_ATTRIBUTE_TYPE_S}}))
	if err != nil {
		t.Fatal(err)
	}
	if tb.GetName() != "sessions" || tb.GetDefaultTtl().AsDuration() != time.Hour || tb.GetKeySchema().GetPartitionKey().GetName() != "id" {
		t.Errorf("created %v", tb)
	}
	if _, err := c.CreateTable(ctx, "sessions"); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	tables, err := c.ListTables(ctx)
	if err != nil || len(tables) != 2 || tables[0].GetName() != "sessions" || tables[1].GetName() != table {
		t.Errorf("list = %v, %v", tables, err)
	}
	if d, err := c.DescribeTable(ctx, "sessions"); err != nil || d.GetId() != tb.GetId() {
		t.Errorf("describe = %v, %v", d, err)
	}
	up, err := c.UpdateTable(ctx, "sessions", client.WithTTLAttribute("expires"), client.WithMaxItemBytes(1<<20))
	if err != nil || up.GetTtlAttribute() != "expires" || up.GetMaxItemBytes() != 1<<20 || up.GetId() != tb.GetId() {
		t.Fatalf("update = %v, %v", up, err)
	}
	// Settings no option names keep their value.
	up, err = c.UpdateTable(ctx, "sessions", client.WithWriteIsolation(kvv1.WriteIsolation_WRITE_ISOLATION_FORBID_RMW))
	if err != nil || up.GetTtlAttribute() != "expires" || up.GetMaxItemBytes() != 1<<20 || up.GetWriteIsolation() != kvv1.WriteIsolation_WRITE_ISOLATION_FORBID_RMW {
		t.Fatalf("second update = %v, %v", up, err)
	}
	if up, err = c.UpdateTable(ctx, "sessions", client.WithTTLAttribute("")); err != nil || up.GetTtlAttribute() != "" {
		t.Fatalf("TTL off: %v, %v", up, err)
	}
	if _, err := c.UpdateTable(ctx, "nope", client.WithTTLAttribute("x")); !client.IsNotFound(err) || !strings.Contains(err.Error(), `update table "nope"`) {
		t.Errorf("update of a missing table: %v, want NotFound naming it", err)
	}
	if s, err := c.ClusterStatus(ctx); err != nil || s.GetPartitions() != 1024 {
		t.Errorf("status = %v, %v", s, err)
	}
	if _, err := c.DeleteTable(ctx, "sessions"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeTable(ctx, "sessions"); !client.IsNotFound(err) || !strings.Contains(err.Error(), `"sessions"`) {
		t.Errorf("describe deleted table: %v, want NotFound naming it", err)
	}
}

func TestNew(t *testing.T) {
	t.Run("invalid options reported together", func(t *testing.T) {
		_, err := client.New(t.Context(), []string{"localhost", "127.0.0.1:1", "127.0.0.1:1"},
			client.WithMaxRetries(-1), client.WithBackoff(time.Second, time.Millisecond), client.WithDefaultTimeout(-1))
		if err == nil {
			t.Fatal("no error")
		}
		for _, want := range []string{`"localhost"`, "listed twice", "max retries -1", "backoff", "default timeout"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to mention %s", err, want)
			}
		}
		if _, err := client.New(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "no router endpoints") {
			t.Errorf("no endpoints: %v", err)
		}
	})
	t.Run("no router reachable", func(t *testing.T) {
		f, err := startFake(newStore())
		if err != nil {
			t.Fatal(err)
		}
		f.srv.Stop() // its port is now closed
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err = client.New(ctx, []string{f.addr})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), f.addr) {
			t.Errorf("err = %v, want a deadline naming %s", err, f.addr)
		}
	})
	t.Run("one router of two down", func(t *testing.T) {
		st := newStore()
		st.tables[table] = &kvv1.Table{Name: table}
		fs := startFakes(t, st, 2)
		fs[0].srv.Stop()
		c := newClient(t, addrs(fs))
		for i := range 10 {
			if _, _, err := c.Get(t.Context(), table, fmt.Appendf(nil, "k%d", i), nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestWriteOutcomes checks that a write under an older version than the
// stored one is reported as superseded, with the version that won, by Put,
// Delete and BatchWriteResults alike.
func TestWriteOutcomes(t *testing.T) {
	c, _ := setup(t, 1)
	ctx := t.Context()
	pk := []byte("outcome")
	r, err := c.Put(ctx, table, pk, nil, []byte("new"), client.WithVersion(100))
	if err != nil || !r.Applied || r.Superseded() || r.Version != 100 || r.CurrentVersion != 100 {
		t.Fatalf("put v100 = %+v, %v", r, err)
	}
	r, err = c.Put(ctx, table, pk, nil, []byte("old"), client.WithVersion(50))
	if err != nil || r.Applied || !r.Superseded() || r.Version != 50 || r.CurrentVersion != 100 {
		t.Fatalf("put v50 = %+v, %v; want superseded by 100", r, err)
	}
	r, err = c.Delete(ctx, table, pk, nil, client.WithVersion(60))
	if err != nil || r.Applied || r.CurrentVersion != 100 {
		t.Fatalf("delete v60 = %+v, %v; want superseded by 100", r, err)
	}
	if it, found, err := c.Get(ctx, table, pk, nil); err != nil || !found || string(it.Value) != "new" {
		t.Fatalf("get = %+v %v %v; the superseded writes changed the item", it, found, err)
	}
	res, err := c.BatchWriteResults(ctx, []client.Mutation{
		{Key: client.Key{Table: table, PartitionKey: pk}, Value: []byte("older"), Version: 99},
		{Key: client.Key{Table: table, PartitionKey: []byte("fresh")}, Value: []byte("x"), Version: 7},
		{Key: client.Key{Table: table, PartitionKey: pk}, Delete: true, Version: 101},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []client.WriteResult{{Version: 99, CurrentVersion: 100}, {Version: 7, Applied: true, CurrentVersion: 7}, {Version: 101, Applied: true, CurrentVersion: 101}}
	if !slices.Equal(res, want) {
		t.Fatalf("batch results = %+v, want %+v", res, want)
	}
}

// TestRetryBudgetCoversRestart fails every call with Unavailable for 1.5 s,
// as a restarting router or storage node does, and checks that a call made
// with the default retry policy rides it out, counting the attempts.
func TestRetryBudgetCoversRestart(t *testing.T) {
	st := newStore()
	st.tables[table] = &kvv1.Table{Name: table, Id: 1}
	fs := startFakes(t, st, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, addrs(fs)) // default retry policy
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	up := time.Now().Add(1500 * time.Millisecond)
	fs[0].setFail(func(context.Context, string) error {
		if time.Now().Before(up) {
			return status.Error(codes.Unavailable, "restarting")
		}
		return nil
	})
	fs[0].calls.Store(0)
	start := time.Now()
	if _, err := c.Put(t.Context(), table, []byte("k"), nil, []byte("v")); err != nil {
		t.Fatalf("put during a 1.5s restart failed after %v: %v", time.Since(start), err)
	}
	n := fs[0].calls.Load()
	t.Logf("succeeded after %v and %d attempts", time.Since(start), n)
	// Backoff 50ms·2ⁿ with equal jitter: at least 25+50+100+200+400 ms
	// before the 6th attempt, so 1.5 s takes 3 to 7 attempts.
	if n < 3 || n > 7 {
		t.Errorf("%d attempts, want 3 to 7", n)
	}
}

// TestDefaultAttempts counts the attempts of a call that always fails with
// Unavailable under the default retry count: 1 + DefaultMaxRetries.
func TestDefaultAttempts(t *testing.T) {
	c, fs := setup(t, 2, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	fail := failWith(codes.Unavailable)
	for _, f := range fs {
		f.setFail(fail)
	}
	_, err := c.Put(t.Context(), table, []byte("k"), nil, []byte("v"))
	want := int64(client.DefaultMaxRetries + 1)
	if got := totalCalls(fs); got != want {
		t.Errorf("%d attempts, want %d", got, want)
	}
	if !client.IsUnavailable(err) || !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", want)) {
		t.Errorf("err = %v", err)
	}
}
