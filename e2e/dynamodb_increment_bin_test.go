package e2e

// The acceptance test of read-modify-write on the DynamoDB endpoint:
// concurrent `UpdateItem ADD counter :one` through two routers must never
// lose an increment, also while a storage node crashes and comes back.

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/framework"
)

const (
	incClients   = 8
	incPerClient = 500
	incTable     = "counters"
	// incCallTimeout bounds one UpdateItem: a call cut off by it is
	// ambiguous (it may have been applied).
	incCallTimeout = 10 * time.Second
	// incMaxRetries bounds the retries of one increment refused as not
	// applied (ThrottlingException while another client holds the item's
	// lock).
	incMaxRetries = 200
)

// incResult is what the clients of one run saw.
type incResult struct {
	// attempted is the number of increments the clients meant to make.
	attempted int64
	// acknowledged increments got a success response.
	acknowledged atomic.Int64
	// retried counts the attempts answered with an error that means "not
	// applied", each retried by the client itself.
	retried atomic.Int64
	// ambiguous increments ended in an error after which the write may or
	// may not have been applied (timeouts, connection errors, 5xx).
	ambiguous atomic.Int64
	// gaveUp increments were refused as not applied incMaxRetries times.
	gaveUp atomic.Int64
	mu     sync.Mutex
	// errs counts the errors the clients saw, by type (errKind).
	errs map[string]int
	// lastSeen is the highest UPDATED_NEW value any client saw.
	lastSeen int64
}

func (r *incResult) countErr(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[kind]++
}

// notApplied reports whether err means the endpoint refused the request
// before writing anything, so that sending it again cannot count the
// increment twice. The endpoint answers ThrottlingException (and
// ProvisionedThroughputExceededException, its rate limit) before it
// changes the item; everything else after the request left the client (a
// timeout, a dropped connection, an internal error) may come after the
// write was applied.
func notApplied(err error) bool {
	switch errCode(err) {
	case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded":
		return true
	}
	// A connection the client could not open sent nothing.
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// errKind names an error for the report.
func errKind(err error) string {
	if c := errCode(err); !strings.HasPrefix(c, "non-API error") {
		return c
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"):
		return "connection lost"
	}
	return "other: " + err.Error()
}

// runIncrements runs incClients clients, alternately on each endpoint,
// each making incPerClient increments of item pk. During the run, mid is
// called once on the test goroutine when a third of the increments are
// acknowledged (nil: nothing).
//
// The clients use RetryMaxAttempts 1: the SDK's retryer would resend a
// request whose first attempt timed out after being applied, counting the
// increment twice with one acknowledgement. Instead each client retries
// only errors that mean "not applied" (notApplied) and counts every other
// error as an ambiguous increment.
func runIncrements(t *testing.T, eps []string, pk string, mid func(*incResult)) *incResult {
	t.Helper()
	res := &incResult{attempted: incClients * incPerClient, errs: map[string]int{}}
	key := map[string]dtypes.AttributeValue{"pk": avS(pk)}
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range incClients {
		cli := newDDBClient(eps[i%len(eps)], 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range incPerClient {
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), incCallTimeout)
					out, err := cli.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(incTable), Key: key,
						UpdateExpression:          aws.String("ADD #c :one"),
						ExpressionAttributeNames:  map[string]string{"#c": "counter"},
						ExpressionAttributeValues: map[string]dtypes.AttributeValue{":one": avN("1")},
						ReturnValues:              dtypes.ReturnValueUpdatedNew})
					cancel()
					if err == nil {
						res.acknowledged.Add(1)
						n, ok := out.Attributes["counter"].(*dtypes.AttributeValueMemberN)
						if !ok {
							failed.Store("UPDATED_NEW without the counter: " + itemText(out.Attributes))
							return
						}
						v := mustInt(n.Value)
						res.mu.Lock()
						res.lastSeen = max(res.lastSeen, v)
						res.mu.Unlock()
						break
					}
					res.countErr(errKind(err))
					if code := errCode(err); code == "ValidationException" || code == "ResourceNotFoundException" {
						failed.Store("increment refused: " + err.Error())
						return
					}
					if !notApplied(err) {
						res.ambiguous.Add(1)
						break
					}
					if try == incMaxRetries {
						res.gaveUp.Add(1)
						break
					}
					res.retried.Add(1)
					time.Sleep(time.Duration(1+min(try, 20)) * 2 * time.Millisecond)
				}
			}
		}()
	}
	if mid != nil {
		deadline := time.Now().Add(2 * time.Minute)
		for res.acknowledged.Load() < res.attempted/3 && time.Now().Before(deadline) && failed.Load() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		mid(res)
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	return res
}

func mustInt(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// readCounter reads the counter with a consistent read through every
// endpoint; they must agree.
func readCounter(t *testing.T, eps []string, pk string) int64 {
	t.Helper()
	var vals []int64
	for _, ep := range eps {
		out, err := newDDBClient(ep, 3).GetItem(ctxT(t, 30*time.Second), &dynamodb.GetItemInput{TableName: aws.String(incTable),
			Key: map[string]dtypes.AttributeValue{"pk": avS(pk)}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatalf("GetItem %s through %s: %v", pk, ep, err)
		}
		n, ok := out.Item["counter"].(*dtypes.AttributeValueMemberN)
		if !ok {
			t.Fatalf("GetItem %s through %s: %s; want a counter", pk, ep, itemText(out.Item))
		}
		vals = append(vals, mustInt(n.Value))
	}
	if slices.Min(vals) != slices.Max(vals) {
		t.Errorf("counter %s read through the two routers: %v; want one value", pk, vals)
	}
	return vals[0]
}

func (r *incResult) log(t *testing.T, what string, final int64, elapsed time.Duration) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%s: attempted %d, acknowledged %d, ambiguous %d, gave up %d, retried attempts %d, errors by type %v, highest UPDATED_NEW %d, final counter %d, %s (%.0f acknowledged increments/s)",
		what, r.attempted, r.acknowledged.Load(), r.ambiguous.Load(), r.gaveUp.Load(), r.retried.Load(), r.errs, r.lastSeen, final,
		elapsed.Round(time.Millisecond), float64(r.acknowledged.Load())/elapsed.Seconds())
}

// TestBinDynamoDBConcurrentIncrement: 8 clients × 500 `UpdateItem ADD
// counter :one` through two routers. Without faults the counter is exactly
// 4000 and every increment is acknowledged. Then again on another item
// with one storage node SIGKILLed and restarted mid-run: every
// acknowledged increment is in the counter, no increment is counted twice
// (final ≤ acknowledged + ambiguous), and final = acknowledged when no
// increment ended ambiguous.
func TestBinDynamoDBConcurrentIncrement(t *testing.T) {
	binTest(t)
	c, eps := startDynamoCluster(t, framework.Options{Nodes: 3, RF: 3, Routers: 2})
	createDDBTable(t, newDDBClient(eps[0], 3), incTable, hashKey("pk", dtypes.ScalarAttributeTypeS))
	// The table is seen by the second router too before the run starts.
	waitTableActive(t, newDDBClient(eps[1], 3), incTable)

	t.Run("steady", func(t *testing.T) {
		start := time.Now()
		res := runIncrements(t, eps, "steady", nil)
		final := readCounter(t, eps, "steady")
		res.log(t, "steady", final, time.Since(start))
		if final != res.attempted || res.acknowledged.Load() != res.attempted || res.ambiguous.Load() != 0 || res.gaveUp.Load() != 0 {
			t.Errorf("steady run: final %d, acknowledged %d, ambiguous %d, gave up %d; want %d, all acknowledged",
				final, res.acknowledged.Load(), res.ambiguous.Load(), res.gaveUp.Load(), res.attempted)
		}
		if res.lastSeen != final {
			t.Errorf("highest UPDATED_NEW %d; want the final %d", res.lastSeen, final)
		}
	})

	t.Run("node killed and restarted", func(t *testing.T) {
		victim := c.Nodes[0]
		start := time.Now()
		res := runIncrements(t, eps, "crash", func(res *incResult) {
			atKill := res.acknowledged.Load()
			victim.Kill(t)
			time.Sleep(time.Second)
			atRestart := res.acknowledged.Load()
			victim.Restart(t)
			t.Logf("%s SIGKILLed after %d acknowledged increments; %d acknowledged while it was down; restarted after %d",
				victim.Name, atKill, atRestart-atKill, atRestart)
		})
		c.WaitReady(t)
		final := readCounter(t, eps, "crash")
		res.log(t, "with "+victim.Name+" SIGKILLed and restarted", final, time.Since(start))
		ack, amb := res.acknowledged.Load(), res.ambiguous.Load()
		if final < ack {
			t.Errorf("final counter %d < %d acknowledged increments: acknowledged increments were lost", final, ack)
		}
		if final > ack+amb {
			t.Errorf("final counter %d > %d acknowledged + %d ambiguous: an increment was counted twice", final, ack, amb)
		}
		if final > res.attempted {
			t.Errorf("final counter %d > %d attempted", final, res.attempted)
		}
		if amb == 0 && final != ack {
			t.Errorf("no ambiguous error, yet final %d != %d acknowledged", final, ack)
		}
		if ack < res.attempted/2 {
			t.Errorf("only %d of %d increments acknowledged with one node of three down: the endpoint should keep serving at quorum", ack, res.attempted)
		}
	})
}
