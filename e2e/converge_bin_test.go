package e2e

// Replicas that heal themselves (anti-entropy), tried the way they fail: a
// replica SIGKILLed under a write+delete load, and two of three replicas
// down while writes are acknowledged at ONE. After the faults no client
// read touches the keys; anti-entropy alone must bring every replica to the
// same records, checked by comparing the digests of every partition on
// every node and by reading every acknowledged key from each returned node
// alone.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
)

// aeArgs run anti-entropy every 500 ms so the tests wait seconds, not the
// default 30 s.
var aeArgs = []string{"--anti-entropy-interval", "500ms"}

// outcome is the acknowledged state of a key: its value, or deleted.
type outcome struct {
	value   string
	deleted bool
}

// writeDeleteLoad puts keys [from, to) and deletes every fourth one right
// after, with workers goroutines, at consistency cons. It returns the
// acknowledged outcome of every key none of whose operations failed, and
// the number of failed operations.
func writeDeleteLoad(cl *client.Client, table string, from, to, workers int, cons kvv1.Consistency, stop <-chan struct{}) (map[string]outcome, int) {
	var mu sync.Mutex
	acked := map[string]outcome{}
	failed := 0
	next := make(chan int)
	go func() {
		defer close(next)
		for i := from; i < to; i++ {
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				k := []byte(fmt.Sprintf("conv-%06d", i))
				v := fmt.Sprintf("v-%06d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := cl.Put(ctx, table, k, nil, []byte(v), client.WithConsistency(cons))
				o := outcome{value: v}
				if err == nil && i%4 == 0 {
					_, err = cl.Delete(ctx, table, k, nil, client.WithConsistency(cons))
					o = outcome{deleted: true}
				}
				cancel()
				mu.Lock()
				if err != nil {
					failed++
				} else {
					acked[string(k)] = o
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return acked, failed
}

// nodeDigests reads every partition digest of a storage node directly.
func nodeDigests(ctx context.Context, addr string) (string, error) {
	cc, err := grpcx.Dial(addr)
	if err != nil {
		return "", err
	}
	defer cc.Close()
	resp, err := storagev1.NewStorageServiceClient(cc).PartitionDigests(ctx, &storagev1.PartitionDigestsRequest{})
	if err != nil {
		return "", err
	}
	return fmt.Sprint(resp.GetDigests()), nil
}

// waitConverged waits until every storage node of c reports the same
// digests for every partition.
func waitConverged(t *testing.T, c *framework.Cluster, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var last []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = last[:0]
		same := true
		for _, n := range c.Nodes {
			d, err := nodeDigests(ctx, n.Addr())
			if err != nil {
				d = "error: " + err.Error()
				same = false
			}
			last = append(last, d)
			if len(last) > 1 && last[0] != d {
				same = false
			}
		}
		cancel()
		if same {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			for i, d := range last {
				t.Logf("%s digests: %.600s", c.Nodes[i].Name, d)
			}
			t.Fatalf("replicas did not converge within %v", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAlone stops every node but c.Nodes[keep], reads every acknowledged
// key at ONE (so only that node can answer), then restarts the others; any
// key read wrong fails the test.
func checkAlone(t *testing.T, c *framework.Cluster, cl *client.Client, table string, acked map[string]outcome, keep int) {
	t.Helper()
	if bad := wrongAlone(t, c, cl, table, acked, keep); bad > 0 {
		t.Fatalf("%s alone: %d of %d acknowledged keys wrong", c.Nodes[keep].Name, bad, len(acked))
	}
}

func TestBinConvergeAfterSIGKILL(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, StorageArgs: aeArgs})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "converge")
	stop := make(chan struct{})
	var acked map[string]outcome
	var failed int
	done := make(chan struct{})
	go func() {
		defer close(done)
		acked, failed = writeDeleteLoad(cl, "converge", 0, 3000, 6, kvv1.Consistency_CONSISTENCY_QUORUM, stop)
	}()
	victim := c.Nodes[2]
	time.Sleep(1500 * time.Millisecond)
	victim.Kill(t)
	time.Sleep(3 * time.Second)
	victim.Restart(t)
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		close(stop)
		<-done
	}
	if failed > 0 {
		t.Errorf("%d QUORUM operations failed with one replica down", failed)
	}
	took := waitConverged(t, c, 90*time.Second)
	t.Logf("%d keys acknowledged (%d failed); replicas converged %v after the load", len(acked), failed, took.Round(time.Millisecond))
	checkAlone(t, c, cl, "converge", acked, 2)
}

func TestBinConvergeWritesAtOne(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, StorageArgs: aeArgs})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "converge_one")
	c.Nodes[1].Kill(t)
	c.Nodes[2].Kill(t)
	acked, failed := writeDeleteLoad(cl, "converge_one", 0, 200, 4, kvv1.Consistency_CONSISTENCY_ONE, nil)
	if failed > 0 || len(acked) != 200 {
		t.Fatalf("writes at ONE with one replica up: %d acknowledged, %d failed", len(acked), failed)
	}
	c.Nodes[1].Restart(t)
	c.Nodes[2].Restart(t)
	took := waitConverged(t, c, 90*time.Second)
	t.Logf("converged %v after both returned", took.Round(time.Millisecond))
	checkAlone(t, c, cl, "converge_one", acked, 1)
	checkAlone(t, c, cl, "converge_one", acked, 2)
}
