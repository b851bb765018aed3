package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// Peer is one system the bench compares.
type Peer struct {
	// Name is how --peers names it.
	Name string
	// Description says what runs.
	Description string
	// Import reports whether the bulk import runs against it.
	Import bool
	// RF is the replication factor of a Veltrix peer (0 for the others).
	// The DynamoDB workloads run on Veltrix peers through their router's
	// DynamoDB endpoint.
	RF int
	// DynamoDB marks a peer that speaks only the DynamoDB API: only the
	// DynamoDB workloads run against it.
	DynamoDB bool
	// Consistency labels its reads in the report: "ONE" or "QUORUM" for
	// Veltrix, "linearizable" or "serializable" for etcd.
	Consistency string
	// base, when set, names the peer whose running instance (and loaded
	// data) this one shares; variant wraps that instance's driver (another
	// read consistency). A variant runs only the workloads that read.
	base    string
	variant func(Driver) Driver
	// start starts it with its data in dir.
	start func(ctx context.Context, dir string, o *Options) (Driver, error)
	// durability states what an acknowledged write survives.
	durability func(sync bool) string
}

// Durability says what an acknowledged write survives on this peer.
func (p Peer) Durability(sync bool) string { return p.durability(sync) }

func veltrixDurability(sync bool) string {
	if sync {
		return "WAL fsync before ack (group commit)"
	}
	return "no fsync (--no-sync)"
}

// Peers are the peers in the order they run.
var Peers = []Peer{
	{
		Name: "veltrix-rf3", Description: "router + 3 storage nodes, RF 3 (writes QUORUM, reads ONE)", Import: true, RF: 3,
		Consistency: "ONE",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startVeltrix(ctx, o.clusterOptions(dir, 3, 3))
		},
		durability: veltrixDurability,
	},
	{
		Name: "veltrix-rf3-quorum", Description: "veltrix-rf3's cluster and data, reads at QUORUM", RF: 3, Consistency: "QUORUM",
		base: "veltrix-rf3", variant: quorumReads, durability: veltrixDurability,
	},
	{
		Name: "veltrix-rf1", Description: "router + 1 storage node, RF 1 (reads ONE: the only replica)", Import: true, RF: 1,
		Consistency: "ONE",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startVeltrix(ctx, o.clusterOptions(dir, 1, 1))
		},
		durability: veltrixDurability,
	},
	{
		Name: "veltrix-rf1-secure", Description: "veltrix-rf1 with TLS on every listener, mutual TLS router→storage and --auth: every call carries an issued API key (bearer token; SigV4 on the DynamoDB endpoint) with write on the bench tables",
		RF: 1, Consistency: "ONE",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startSecureVeltrix(ctx, o.clusterOptions(dir, 1, 1))
		},
		durability: veltrixDurability,
	},
	{
		Name: "storage-direct", Description: "the RF 1 storage node called directly (StorageService Read/Apply), no router",
		Consistency: "local",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startDirect(ctx, o.clusterOptions(dir, 1, 1))
		},
		durability: veltrixDurability,
	},
	{
		Name: "etcd-1", Description: "embedded etcd v3.7, 1 member; clientv3 Range/Put, Txn for batches",
		Consistency: "linearizable",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startEtcd(ctx, dir, 1, o.Sync)
		},
		durability: etcdDurability,
	},
	{
		Name: "etcd-1-serializable", Description: "etcd-1's member and data, serializable Range (no ReadIndex round)",
		Consistency: "serializable", base: "etcd-1", variant: serializableReads, durability: etcdDurability,
	},
	{
		Name: "etcd-3", Description: "embedded etcd v3.7, 3 members in one process; client spread over all three",
		Consistency: "linearizable",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startEtcd(ctx, dir, 3, o.Sync)
		},
		durability: etcdDurability,
	},
	{
		Name: "etcd-3-serializable", Description: "etcd-3's members and data, serializable Range (the member the client picked answers alone)",
		Consistency: "serializable", base: "etcd-3", variant: serializableReads, durability: etcdDurability,
	},
	{
		Name: "redis", Description: "redis-server (Debian); GET/SET, MGET for batches (go-redis)", Consistency: "single node",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startRedisDriver(ctx, dir, o.Sync, false, o.Concurrency)
		},
		durability: redisDurability,
	},
	{
		Name: "redis-pipelined", Description: fmt.Sprintf("redis-server; each client sends %d commands per round trip (go-redis pipeline)", redisPipelineDepth),
		Consistency: "single node",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			d, err := startRedisDriver(ctx, dir, o.Sync, true, o.Concurrency)
			if err != nil {
				return nil, err
			}
			return pipelinedRedis{d}, nil
		},
		durability: redisDurability,
	},
	{
		Name: "pebble", Description: "raw Pebble in-process with the storage engine's options (the engine's ceiling)", Consistency: "local",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startPebble(dir, o.Sync)
		},
		durability: func(sync bool) string {
			if sync {
				return "WAL fsync per write (pebble.Sync)"
			}
			return "no fsync (pebble.NoSync)"
		},
	},
	{
		Name: "dynalite", Description: "dynalite (npm DynamoDB emulator on Node.js, LevelDB); GetItem/PutItem with the AWS SDK for Go v2", DynamoDB: true,
		Consistency: "eventual (GetItem default)",
		start: func(ctx context.Context, dir string, o *Options) (Driver, error) {
			return startDynalite(ctx, dir, o.Concurrency)
		},
		durability: func(bool) string { return "LevelDB, no fsync control" },
	},
}

func etcdDurability(sync bool) string {
	if sync {
		return "raft log fsync before ack"
	}
	return "no fsync (--unsafe-no-fsync)"
}

func redisDurability(sync bool) string {
	if sync {
		return "AOF, appendfsync always"
	}
	return "in memory (no AOF, no RDB)"
}

// PeerByName finds a peer.
func PeerByName(name string) (Peer, bool) {
	for _, p := range Peers {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Peer{}, false
}

func (o *Options) clusterOptions(dir string, nodes, rf int) ClusterOptions {
	co := ClusterOptions{Dir: dir, Nodes: nodes, RF: rf, Sync: o.Sync, Logger: o.Logger}
	if o.wantsDynamoDB() {
		co.DynamoDBAddr = "127.0.0.1:0"
	}
	return co
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func mkdirTemp(parent, name string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, filepath.Base(name)+"-")
}
