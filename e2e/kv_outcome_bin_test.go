package e2e

import (
	"context"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec sends pre-encoded bytes, so a test can send what a conforming
// encoder refuses to produce (invalid UTF-8 in a string field).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestBinKVOutcomes is issue 12's report replayed against the real router
// and CLI: a version 2^64-1 is refused (it would make the item
// unchangeable), a write under an older version prints "superseded" and
// exits 3 instead of "OK", a negative TTL is a usage error, invalid UTF-8 in
// a table name is InvalidArgument, and Scan of a 3-item table sends no empty
// pages.
func TestBinKVOutcomes(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c := framework.Start(t, framework.Options{Nodes: 1, RF: 1, NoSync: true})
	cl := c.Client(t)
	ctx := t.Context()
	if _, err := cl.Admin().CreateTable(ctx, &kvv1.CreateTableRequest{Name: "outcomes"}); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, time.Minute, "", veltrix, append(args, "--endpoints", strings.Join(c.RouterAddrs(), ","))...)
	}
	expect := func(res cmdResult, code int, out, errOut string) {
		t.Helper()
		if res.code != code || !strings.Contains(res.stdout, out) || !strings.Contains(res.stderr, errOut) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout containing %q, stderr containing %q", res.code, res.stdout, res.stderr, code, out, errOut)
		}
	}

	// The command: refused, nothing stored.
	expect(cli("kv", "put", "outcomes", "k", "evil", "--version", strconv.FormatUint(math.MaxUint64, 10)), 1, "", "--max-version-skew")
	expect(cli("kv", "get", "outcomes", "k"), 0, "(not found)", "")

	// 30 minutes ahead is within the default bound of 1h.
	ahead := hlc.FromTime(time.Now().Add(30*time.Minute), 0)
	expect(cli("kv", "put", "outcomes", "k", "v1", "--version", strconv.FormatUint(ahead, 10)), 0, "OK version "+strconv.FormatUint(ahead, 10), "")
	// A router-versioned put and an older delete now change nothing, and
	// say so with exit code 3.
	superseded := "superseded: the stored version " + strconv.FormatUint(ahead, 10) + " is newer"
	expect(cli("kv", "put", "outcomes", "k", "v2"), 3, superseded, "")
	expect(cli("kv", "del", "outcomes", "k", "--version", strconv.FormatUint(ahead-1, 10)), 3, superseded, "")
	res := cli("kv", "put", "outcomes", "k", "v3", "--version", strconv.FormatUint(ahead-1, 10), "--output", "json")
	expect(res, 3, `"applied": false`, "")
	if !strings.Contains(res.stdout, `"current_version": `+strconv.FormatUint(ahead, 10)) {
		t.Errorf("json output %s lacks the current version", res.stdout)
	}
	expect(cli("kv", "get", "outcomes", "k"), 0, "v1", "")
	expect(cli("kv", "del", "outcomes", "k", "--version", strconv.FormatUint(ahead+1, 10)), 0, "OK deleted", "")

	// TTLs must be positive.
	expect(cli("kv", "put", "outcomes", "k2", "v", "--ttl", "-5s"), 2, "", "--ttl -5s: must be positive")
	expect(cli("kv", "put", "outcomes", "k2", "v", "--ttl", "1h"), 0, "OK version", "")
	expect(cli("kv", "put", "outcomes", "k3", "v"), 0, "OK version", "")

	// Invalid UTF-8 in the table name, sent as raw bytes.
	conn, err := grpc.NewClient(c.RouterAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("out\xffcomes"))
	key = protowire.AppendBytes(protowire.AppendTag(key, 2, protowire.BytesType), []byte("k"))
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), key)
	var reply []byte
	err = conn.Invoke(ctx, "/veltrix.kv.v1.KVService/Get", &req, &reply, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "key.table: not valid UTF-8") {
		t.Fatalf("Get with an invalid UTF-8 table: %v; want InvalidArgument naming key.table", err)
	}

	// Scan of a table with 2 items over 64 partitions: no empty pages.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := cl.KV().Scan(sctx, &kvv1.ScanRequest{Table: "outcomes"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, items := 0, 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs++
		items += len(m.GetItems())
		if len(m.GetItems()) == 0 || len(m.GetNextPageToken()) == 0 {
			t.Errorf("scan message %d: %d items, next_page_token %x", msgs, len(m.GetItems()), m.GetNextPageToken())
		}
	}
	if items != 2 || msgs > 2 {
		t.Errorf("scan sent %d messages with %d items; want at most 2 with 2", msgs, items)
	}

	// Table settings for the DynamoDB endpoint through the CLI: set at
	// creation, changed by table update, shown by describe; bad values are
	// usage errors that change nothing.
	expect(cli("table", "create", "settings", "--pk", "id:S", "--max-item-bytes", "1048576", "--write-isolation", "forbid_rmw"),
		0, "1048576 B", "")
	expect(cli("table", "update", "settings"), 2, "", "nothing to change")
	expect(cli("table", "update", "settings", "--write-isolation", "serializable"), 2, "", `--write-isolation "serializable"`)
	expect(cli("table", "update", "settings", "--max-item-bytes", "70000000"), 1, "", "at most 67108864")
	expect(cli("table", "update", "settings", "--ttl-attribute", "expires", "--write-isolation", "only_rmw_uses_lwt"), 0, "only_rmw_uses_lwt", "")
	res = cli("table", "describe", "settings", "--output", "json")
	for _, want := range []string{`"ttlAttribute"`, `"expires"`, `"WRITE_ISOLATION_ONLY_RMW_USES_LWT"`, `"1048576"`} {
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Fatalf("table describe --output json: exit %d, stdout %q; want %s", res.code, res.stdout, want)
		}
	}
	expect(cli("table", "update", "settings", "--ttl-attribute", ""), 0, "settings", "")
	if got, err := cl.Admin().DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: "settings"}); err != nil || got.GetTable().GetTtlAttribute() != "" || got.GetTable().GetMaxItemBytes() != 1<<20 {
		t.Fatalf("after turning TTL off: %v, %v", got, err)
	}
}
