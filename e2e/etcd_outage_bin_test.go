package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestBinEtcdOutage: etcd is killed for longer than the storage nodes'
// lease TTL while a QUORUM write-and-read load runs, a router and a storage
// node are restarted during the outage (both start from the topology they
// persisted), then etcd comes back. No QUORUM operation may fail, before,
// during or after; admin calls that need etcd fail fast with Unavailable;
// the nodes, the restarted one too, are registered again within seconds of
// etcd's return.
func TestBinEtcdOutage(t *testing.T) {
	binTest(t)
	const leaseTTL = 2 * time.Second
	c := framework.Start(t, framework.Options{
		Nodes: 3, RF: 3, Routers: 2, RouterStateDir: true,
		StorageArgs: []string{"--lease-ttl", leaseTTL.String(), "--etcd-start-timeout", "2s"},
		RouterArgs:  []string{"--etcd-start-timeout", "2s"},
	})
	// A small retry budget (well under a second): enough to step over the
	// restarted router, far too small to hide replicas counted down.
	cl := c.Client(t, client.WithMaxRetries(4), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	createTableBin(t, cl, "outage")
	waitTableOnRouters(t, c, "outage")

	const mark = 200
	l := startLoad(t, cl, "outage", 1<<30, 4, true, mark)
	t.Cleanup(func() { l.stop.Store(true); <-l.done })
	l.reached(t, mark, time.Minute)

	c.Etcd.Kill(t)
	outage := time.Now()
	atKill := l.acks.Load()

	// Admin calls that need etcd fail fast.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	begin := time.Now()
	_, err := cl.CreateTable(ctx, "during_outage")
	cancel()
	if status.Code(err) != codes.Unavailable || time.Since(begin) > 10*time.Second {
		t.Errorf("CreateTable during the outage: %v after %s; want Unavailable within 10s", err, time.Since(begin).Round(time.Millisecond))
	} else {
		t.Logf("CreateTable during the outage: %v (%s)", err, time.Since(begin).Round(time.Millisecond))
	}

	// A router restarted without etcd serves from its persisted topology.
	time.Sleep(leaseTTL)
	c.Routers[1].Stop(t)
	c.Routers[1].Restart(t)
	if !strings.Contains(c.Routers[1].Log(), "starting from the persisted topology snapshot") {
		t.Errorf("%s did not start from its persisted topology", c.Routers[1].Name)
	}

	// So does a storage node restarted without etcd, on the same address
	// (the routers retain it there).
	n3 := c.Nodes[2]
	n3.Stop(t)
	n3.Restart(t)
	if !strings.Contains(n3.Log(), "starting from the persisted topology snapshot") {
		t.Errorf("%s did not start from its persisted topology", n3.Name)
	}

	// Outlast the leases comfortably before etcd returns.
	if d := 3*leaseTTL - time.Since(outage); d > 0 {
		time.Sleep(d)
	}
	duringOutage := l.acks.Load() - atKill
	c.Etcd.Restart(t)
	back := time.Now()
	t.Logf("etcd was down %s; %d puts acknowledged meanwhile", back.Sub(outage).Round(time.Millisecond), duringOutage)

	// Every node registered again and every router fresh, within seconds.
	c.WaitReady(t)
	for !strings.Contains(n3.Log(), "identity checked and node registered") && time.Since(back) < 30*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(n3.Log(), "identity checked and node registered") {
		t.Errorf("%s, restarted without etcd, did not register once etcd returned", n3.Name)
	}
	if d := time.Since(back); d > 10*time.Second {
		t.Errorf("nodes registered again and routers fresh %s after etcd returned; want under 10s", d.Round(time.Millisecond))
	} else {
		t.Logf("nodes registered again and routers fresh %s after etcd returned", d.Round(time.Millisecond))
	}
	// Keep the load running past the leases that expire after etcd's
	// return (etcd restarts every lease's TTL when it comes back).
	time.Sleep(3 * leaseTTL)
	atStop := l.acks.Load()
	l.stop.Store(true)
	l.wait(t, time.Minute)

	if duringOutage == 0 {
		t.Error("no put was acknowledged while etcd was down")
	}
	if n := len(l.failures(1 << 30)); n > 0 {
		t.Errorf("%d QUORUM operations failed across the etcd outage (want 0): %v", n, l.failures(10))
	}
	if len(l.mismatched) > 0 {
		t.Errorf("%d QUORUM reads did not return the acknowledged write: %v", len(l.mismatched), head(l.mismatched, 5))
	}
	t.Logf("%d puts (each read back at QUORUM) acknowledged, %d after etcd returned", atStop, atStop-atKill-duringOutage)

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.CreateTable(ctx, "after_outage"); err != nil {
		t.Errorf("CreateTable after the outage: %v", err)
	}
}
