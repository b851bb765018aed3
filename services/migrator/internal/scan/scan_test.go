package scan_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/ddbattr"
	"github.com/veltrixdb/veltrix/services/migrator/internal/scan"
)

// table is a dynalite table filled with n items: pk (S) and sk (N) keys,
// every attribute type, and a padding attribute of pad bytes.
func table(t *testing.T, n, pad int) (*dynamodb.Client, map[string]ddb.Item) {
	t.Helper()
	ep := peers.StartDynalite(t)
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(ep),
		Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
	})
	ctx := t.Context()
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("live"),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("live")})
		if err == nil && out.Table.TableStatus == types.TableStatusActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("table not ACTIVE: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := make(map[string]ddb.Item, n)
	var reqs []types.WriteRequest
	flush := func() {
		for len(reqs) > 0 {
			out, err := client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"live": reqs}})
			if err != nil {
				t.Fatal(err)
			}
			reqs = out.UnprocessedItems["live"]
		}
	}
	for i := range n {
		it := ddb.Item{
			"pk":   ddb.S(fmt.Sprintf("user#%d", i%97)),
			"sk":   ddb.NFromInt64(int64(i)),
			"n":    ddb.MustN(fmt.Sprintf("%d.25", i)),
			"b":    ddb.B{byte(i), 0, 1},
			"ok":   ddb.Bool(i%2 == 0),
			"null": ddb.Null{},
			"m":    ddb.M{"tags": ddb.SS{"a", fmt.Sprint(i)}, "l": ddb.L{ddb.S("x"), ddb.NS{ddb.NFromInt64(1), ddb.NFromInt64(2)}}},
			"bs":   ddb.BS{{1}, {2, byte(i)}},
			"pad":  ddb.S(strings.Repeat("p", pad)),
		}
		want[fmt.Sprint(i)] = it
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: ddbattr.FromItem(it)}})
		if len(reqs) == 25 {
			flush()
		}
	}
	flush()
	return client, want
}

// collector records applied pages.
type collector struct {
	mu       sync.Mutex
	items    map[string]ddb.Item
	applied  int
	segments map[int]int // items per segment
	versions map[uint64]bool
	fail     func(p scan.Page) error
}

func newCollector() *collector {
	return &collector{items: map[string]ddb.Item{}, segments: map[int]int{}, versions: map[uint64]bool{}}
}

func (c *collector) apply(_ context.Context, p scan.Page) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(p); err != nil {
			return err
		}
	}
	for _, it := range p.Items {
		c.items[it["sk"].(ddb.N).String()] = it
		c.applied++
		c.segments[p.Segment]++
	}
	c.versions[p.Version] = true
	return nil
}

func (c *collector) check(t *testing.T, want map[string]ddb.Item) {
	t.Helper()
	if len(c.items) != len(want) {
		t.Errorf("scanned %d distinct items, the table has %d", len(c.items), len(want))
	}
	for k, w := range want {
		if got, ok := c.items[k]; !ok || !ddb.EqualItems(got, w) {
			t.Errorf("item %s = %v, want %v", k, got, w)
			return
		}
	}
}

// TestScanSegmentsBudget scans with 4 segments under a read-capacity
// budget and checks every item arrives, every segment did its share, and
// the budget held.
func TestScanSegmentsBudget(t *testing.T) {
	client, want := table(t, 600, 900) // ~1 KB items: ~600 KB, ~75 RCU
	cp := checkpoint.NewMemory()
	const rate = 25.0
	src, err := scan.New(client, "live", cp, scan.Options{Segments: 4, ReadCapacityPerSecond: rate, PageLimit: 40})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	began := time.Now()
	if err := src.Run(t.Context(), c.apply); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	c.check(t, want)
	if c.applied != len(want) {
		t.Errorf("applied %d items for %d", c.applied, len(want))
	}
	for seg := range 4 {
		if c.segments[seg] == 0 {
			t.Errorf("segment %d scanned nothing: %v", seg, c.segments)
		}
	}
	st := src.Stats()
	if st.SegmentsDone != 4 || st.Items != uint64(len(want)) || st.ConsumedCapacity <= 0 {
		t.Errorf("stats %+v", st)
	}
	// The bucket starts with one second of budget and every call waits
	// until its debt is paid: all but that second and the last calls'
	// overdraft (at most one page per segment) took time at the rate.
	perPage := st.ConsumedCapacity / float64(st.Pages)
	minTime := time.Duration((st.ConsumedCapacity - rate - 4*perPage) / rate * float64(time.Second))
	if took < minTime {
		t.Errorf("consumed %.1f RCU in %s; a budget of %.0f/s needs at least %s", st.ConsumedCapacity, took, rate, minTime)
	}
	cps, err := cp.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seg := range 4 {
		if got := cps[scan.SegmentName(seg, 4)]; !got.Done || got.Records != uint64(c.segments[seg]) {
			t.Errorf("checkpoint of segment %d: %+v", seg, got)
		}
	}
	if len(c.versions) != 1 {
		t.Errorf("versions %v, want one", c.versions)
	}
	t.Logf("%d items, %.1f RCU in %d pages, %s (minimum %s)", st.Items, st.ConsumedCapacity, st.Pages, took, minTime)
}

// TestScanResume stops a scan mid-way (a failed apply) and resumes it from
// the checkpoints: every item arrives, at most the failed page again, with
// the first run's version.
func TestScanResume(t *testing.T) {
	client, want := table(t, 500, 10)
	cp := checkpoint.NewMemory()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	opts := scan.Options{Segments: 4, PageLimit: 30, Now: func() time.Time { return now }}
	src, err := scan.New(client, "live", cp, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	pages := 0
	c.fail = func(p scan.Page) error {
		if pages++; pages == 7 {
			return errors.New("target unavailable")
		}
		return nil
	}
	if err := src.Run(t.Context(), c.apply); err == nil || !strings.Contains(err.Error(), "target unavailable") {
		t.Fatalf("Run = %v, want the apply error", err)
	}
	first := c.applied
	if first == 0 || first >= len(want) {
		t.Fatalf("first run applied %d of %d", first, len(want))
	}

	now = now.Add(time.Hour) // the resumed scan keeps the first start's version
	c.fail = nil
	src, err = scan.New(client, "live", cp, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Run(t.Context(), c.apply); err != nil {
		t.Fatal(err)
	}
	c.check(t, want)
	// Pages of other segments in flight when the first run stopped may
	// be applied again, at most one per segment.
	if extra := c.applied - len(want); extra < 0 || extra > 4*30 {
		t.Errorf("applied %d items for %d: %d replays", c.applied, len(want), extra)
	}
	if len(c.versions) != 1 || !c.versions[hlc.FromTime(now.Add(-time.Hour), 0)] {
		t.Errorf("versions %v, want the first start's only", c.versions)
	}
	// A third run has nothing left to do.
	before := c.applied
	if err := src.Run(t.Context(), c.apply); err != nil || c.applied != before {
		t.Errorf("a finished scan ran again: %v, %d more items", err, c.applied-before)
	}

	// The segment count cannot change midway.
	other, err := scan.New(client, "live", cp, scan.Options{Segments: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Run(t.Context(), c.apply); !errors.Is(err, scan.ErrSegmentsChanged) {
		t.Errorf("Run with 8 segments = %v, want ErrSegmentsChanged", err)
	}
}

func TestScanMissingTable(t *testing.T) {
	client, _ := table(t, 1, 1)
	src, err := scan.New(client, "nope", checkpoint.NewMemory(), scan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Run(t.Context(), newCollector().apply); !errors.Is(err, scan.ErrTableNotFound) {
		t.Errorf("Run = %v, want ErrTableNotFound", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	_, err := scan.New(nil, "", nil, scan.Options{Segments: -1, ReadCapacityPerSecond: -1, PageLimit: -1, MaxRetries: -1})
	for _, want := range []string{"client", "checkpoint", "Segments", "ReadCapacityPerSecond", "PageLimit", "MaxRetries"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
