package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
)

// etcdMaxTxnOps is etcd's default --max-txn-ops: the most operations in one
// transaction.
const etcdMaxTxnOps = 128

// etcdMaxTxnBytes keeps a load transaction under etcd's default 1.5 MiB
// request limit.
const etcdMaxTxnBytes = 1 << 20

// etcdDriver talks to embedded etcd members with clientv3: Put, Range (Get)
// and, for batches, one Txn of Gets or Puts.
type etcdDriver struct {
	cli     *clientv3.Client
	members []*embed.Etcd
	// readOpts are the Range options: none (linearizable, etcd's default)
	// or WithSerializable.
	readOpts []clientv3.OpOption
	variant  bool // shares another driver's client and members: Close does nothing
}

// serializableReads is d (an *etcdDriver) reading with serializable Range
// requests: answered by the member the client talks to, without the
// ReadIndex round trip to the leader a linearizable read takes.
func serializableReads(d Driver) Driver {
	e := d.(*etcdDriver)
	return &etcdDriver{cli: e.cli, members: e.members, readOpts: []clientv3.OpOption{clientv3.WithSerializable()}, variant: true}
}

// startEtcd starts n embedded members in this process on loopback and
// connects a client to all of them. fsync false turns off etcd's fsyncs
// (--unsafe-no-fsync).
func startEtcd(ctx context.Context, dir string, n int, fsync bool) (*etcdDriver, error) {
	var lastErr error
	// Free ports can be taken before etcd binds them: retry on fresh ones.
	for attempt := range 3 {
		d, err := tryStartEtcd(ctx, filepath.Join(dir, fmt.Sprintf("try%d", attempt)), n, fsync)
		if err == nil {
			return d, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartEtcd(ctx context.Context, dir string, n int, fsync bool) (_ *etcdDriver, err error) {
	type ports struct{ client, peer int }
	ps := make([]ports, n)
	for i := range ps {
		if ps[i].client, err = etcdembed.FreePort(); err != nil {
			return nil, err
		}
		if ps[i].peer, err = etcdembed.FreePort(); err != nil {
			return nil, err
		}
	}
	u := func(port int) url.URL {
		return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	}
	var initial []string
	for i, p := range ps {
		pu := u(p.peer)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, pu.String()))
	}
	d := &etcdDriver{members: make([]*embed.Etcd, n)}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	// Members of a new cluster wait for each other: start them together.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ec := embed.NewConfig()
			ec.Name = fmt.Sprintf("m%d", i)
			ec.Dir = filepath.Join(dir, ec.Name)
			cu, pu := u(ps[i].client), u(ps[i].peer)
			ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
			ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
			ec.InitialCluster = strings.Join(initial, ",")
			ec.InitialClusterToken = "veltrix-bench"
			ec.UnsafeNoFsync = !fsync
			ec.Logger = "zap"
			ec.LogLevel = "error"
			ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
			e, err := embed.StartEtcd(ec)
			if err != nil {
				errs[i] = fmt.Errorf("bench: etcd member %d: %w", i, err)
				return
			}
			d.members[i] = e
			select {
			case <-e.Server.ReadyNotify():
			case err := <-e.Err():
				errs[i] = fmt.Errorf("bench: etcd member %d failed: %w", i, err)
			case <-time.After(60 * time.Second):
				errs[i] = fmt.Errorf("bench: etcd member %d not ready after 60s", i)
			case <-ctx.Done():
				errs[i] = ctx.Err()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var eps []string
	for _, p := range ps {
		cu := u(p.client)
		eps = append(eps, cu.String())
	}
	d.cli, err = clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (d *etcdDriver) Get(ctx context.Context, key []byte) (bool, error) {
	resp, err := d.cli.Get(ctx, string(key), d.readOpts...)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}

func (d *etcdDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.cli.Put(ctx, string(key), string(value))
	return err
}

func (d *etcdDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(string(k), d.readOpts...)
	}
	resp, err := d.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	found := 0
	for _, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			found++
		}
	}
	return found, nil
}

func (d *etcdDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	var ops []clientv3.Op
	size := 0
	for i := range keys {
		ops = append(ops, clientv3.OpPut(string(keys[i]), string(values[i])))
		size += len(keys[i]) + len(values[i])
		if len(ops) == etcdMaxTxnOps || size >= etcdMaxTxnBytes || i == len(keys)-1 {
			if _, err := d.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				return err
			}
			ops, size = ops[:0], 0
		}
	}
	return nil
}

func (d *etcdDriver) Close() error {
	if d.variant {
		return nil
	}
	var err error
	if d.cli != nil {
		err = d.cli.Close()
	}
	var wg sync.WaitGroup
	for _, m := range d.members {
		if m == nil {
			continue
		}
		wg.Go(func() {
			m.Close()
			<-m.Server.StopNotify()
		})
	}
	wg.Wait()
	return err
}
