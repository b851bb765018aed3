package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/placement"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
)

// benchTable is the table every Veltrix peer reads and writes.
const benchTable = "bench"

// veltrixDriver talks to a cluster through its router with the Go client,
// as an application would.
type veltrixDriver struct {
	cluster *Cluster
	c       *client.Client
	// admin changes tables; c itself except on a secure cluster, where c
	// holds only write on the bench tables.
	admin *client.Client
	// sec is a secure cluster's TLS and keys; nil otherwise.
	sec   *secureAccess
	owned bool // close the cluster on Close
	// readOpts override the client's read consistency (ONE by default).
	readOpts []client.CallOption
	variant  bool // shares another driver's client: Close does nothing
}

// quorumReads is d (a *veltrixDriver) reading at QUORUM.
func quorumReads(d Driver) Driver {
	v := d.(*veltrixDriver)
	return &veltrixDriver{cluster: v.cluster, c: v.c, admin: v.admin, sec: v.sec, readOpts: []client.CallOption{client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM)}, variant: true}
}

// startVeltrix starts a cluster and connects a client to its router.
func startVeltrix(ctx context.Context, o ClusterOptions) (*veltrixDriver, error) {
	c, err := StartCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := newVeltrixDriver(ctx, c)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	d.owned = true
	return d, nil
}

func newVeltrixDriver(ctx context.Context, c *Cluster) (*veltrixDriver, error) {
	cl, err := client.New(ctx, []string{c.Router.Addr()}, client.WithDefaultTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	d := &veltrixDriver{cluster: c, c: cl, admin: cl}
	if _, err := cl.CreateTable(ctx, benchTable); err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	if err := d.waitWrites(ctx); err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	return d, nil
}

// waitWrites waits until a write goes through: the nodes learn the
// placement from etcd a moment after the router (and the routers learn a
// new API key from etcd a moment after it is issued).
func (d *veltrixDriver) waitWrites(ctx context.Context) error {
	if err := waitUntil(ctx, 30*time.Second, func() error {
		_, err := d.c.Put(ctx, benchTable, []byte("bench-probe"), nil, []byte("x"))
		return err
	}); err != nil {
		return fmt.Errorf("bench: cluster does not take writes: %w", err)
	}
	return nil
}

func (d *veltrixDriver) Get(ctx context.Context, key []byte) (bool, error) {
	_, found, err := d.c.Get(ctx, benchTable, key, nil, d.readOpts...)
	return found, err
}

func (d *veltrixDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.c.Put(ctx, benchTable, key, nil, value)
	return err
}

func (d *veltrixDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	ks := make([]client.Key, len(keys))
	for i, k := range keys {
		ks[i] = client.Key{Table: benchTable, PartitionKey: k}
	}
	res, err := d.c.BatchGet(ctx, ks, d.readOpts...)
	found := 0
	for _, r := range res {
		if r.Found {
			found++
		}
	}
	return found, err
}

func (d *veltrixDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	muts := make([]client.Mutation, len(keys))
	for i := range keys {
		muts[i] = client.Mutation{Key: client.Key{Table: benchTable, PartitionKey: keys[i]}, Value: values[i]}
	}
	_, err := d.c.BatchWrite(ctx, muts)
	return err
}

func (d *veltrixDriver) Close() error {
	if d.variant {
		return nil
	}
	err := d.c.Close()
	if d.admin != nil && d.admin != d.c {
		err = errors.Join(err, d.admin.Close())
	}
	if d.sec != nil {
		d.sec.adminTLS.Close()
	}
	if d.owned {
		err = errors.Join(err, d.cluster.Close())
	}
	return err
}

// directDriver calls one storage node's StorageService directly, as the
// router does, without the router: the difference to the router peer on
// the same one-node cluster is the router's cost.
type directDriver struct {
	cluster    *Cluster
	cc         *grpc.ClientConn
	s          storagev1.StorageServiceClient
	tableID    uint64
	partitions uint32
	clock      *hlc.Clock
}

func startDirect(ctx context.Context, o ClusterOptions) (*directDriver, error) {
	o.Nodes, o.RF = 1, 1
	c, err := StartCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := newDirectDriver(ctx, c)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return d, nil
}

func newDirectDriver(ctx context.Context, c *Cluster) (_ *directDriver, err error) {
	// The router creates the table (the id) and knows P.
	cl, err := client.New(ctx, []string{c.Router.Addr()})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	t, err := cl.CreateTable(ctx, benchTable)
	if err != nil {
		return nil, err
	}
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := grpcx.Dial(c.Nodes[0].Addr())
	if err != nil {
		return nil, err
	}
	d := &directDriver{
		cluster: c, cc: cc, s: storagev1.NewStorageServiceClient(cc), tableID: t.GetId(),
		partitions: st.GetPartitions(), clock: hlc.New(),
	}
	if d.partitions == 0 {
		return nil, errors.Join(errors.New("bench: cluster status reports 0 partitions"), cc.Close())
	}
	if err := waitUntil(ctx, 30*time.Second, func() error { return d.Put(ctx, []byte("bench-probe"), []byte("x")) }); err != nil {
		return nil, errors.Join(fmt.Errorf("bench: storage node does not take writes: %w", err), cc.Close())
	}
	return d, nil
}

func (d *directDriver) key(k []byte) *storagev1.Key {
	return &storagev1.Key{Partition: placement.PartitionOf(d.tableID, k, d.partitions), TableId: d.tableID, PartitionKey: k}
}

func (d *directDriver) Get(ctx context.Context, key []byte) (bool, error) {
	resp, err := d.s.Read(ctx, &storagev1.ReadRequest{Key: d.key(key)})
	if err != nil {
		return false, err
	}
	return resp.GetFound() && !resp.GetRecord().GetTombstone(), nil
}

func (d *directDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.s.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: d.key(key), Version: d.clock.Now(), Value: value}}})
	return err
}

func (d *directDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	req := &storagev1.BatchReadRequest{Keys: make([]*storagev1.Key, len(keys))}
	for i, k := range keys {
		req.Keys[i] = d.key(k)
	}
	resp, err := d.s.BatchRead(ctx, req)
	if err != nil {
		return 0, err
	}
	found := 0
	for _, r := range resp.GetResults() {
		if r.GetFound() && !r.GetRecord().GetTombstone() {
			found++
		}
	}
	return found, nil
}

func (d *directDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	req := &storagev1.ApplyRequest{Records: make([]*storagev1.Record, len(keys))}
	for i := range keys {
		req.Records[i] = &storagev1.Record{Key: d.key(keys[i]), Version: d.clock.Now(), Value: values[i]}
	}
	_, err := d.s.Apply(ctx, req)
	return err
}

func (d *directDriver) Close() error {
	return errors.Join(d.cc.Close(), d.cluster.Close())
}

// waitUntil retries f every 50ms until it succeeds or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
