// Package checkpoint stores the resume points of the migrator's sources:
// one Checkpoint per stream shard (DynamoDB Streams, Kinesis) or per Scan
// segment, by name. Etcd keeps them for jobs (keys under a prefix the
// caller chooses, normally topology.NewKeys(cluster).Job(id)+"/shards/"),
// so a restarted migrator resumes exactly where the last one stopped;
// Memory keeps them for unit tests.
//
// A source saves a checkpoint only after the records it covers were
// applied, so a crash replays at most the records since the last save, and
// replays are harmless: every write carries a version derived from its
// source record (see package cdc), which the storage nodes compare.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrFenced is returned by Save when the store's guard no longer holds:
// another migrator took over the job (its claim or lease is gone). The
// caller must stop without saving more. Use errors.Is.
var ErrFenced = errors.New("checkpoint: guard failed: this migrator no longer owns the job")

// Checkpoint is the resume point of one shard or segment.
type Checkpoint struct {
	// Position is the last applied position: a stream sequence number, or
	// a Scan segment's serialized LastEvaluatedKey. Empty when nothing has
	// been applied yet.
	Position string `json:"position,omitempty"`
	// Done says the shard was read to its end (it is closed and every
	// record was applied) or the segment was scanned to its end.
	Done bool `json:"done,omitempty"`
	// Clock is the version derived for the last applied record of a stream
	// shard. A restart derives the versions of the records after Position
	// from it, so a replayed record gets the same version it had; children
	// of a shard start from their parents' clocks.
	Clock uint64 `json:"clock,omitempty"`
	// Since, for a stream shard that a LATEST start began reading and that
	// has applied nothing yet, is when reading began; a restart resumes it
	// AT_TIMESTAMP Since instead of LATEST, so nothing written in between
	// is skipped.
	Since time.Time `json:"since,omitzero"`
	// Records counts the records (stream) or items (Scan) applied in this
	// shard or segment, for progress reports.
	Records uint64 `json:"records,omitempty"`
	// UpdateTime is when the checkpoint was saved.
	UpdateTime time.Time `json:"update_time,omitzero"`
}

// Store loads and saves checkpoints by name (a shard id, or a segment
// name). Implementations are safe for concurrent use; names are at most
// 256 bytes of [A-Za-z0-9_.:-].
type Store interface {
	// Load returns the checkpoint saved under name; ok is false when there
	// is none.
	Load(ctx context.Context, name string) (cp Checkpoint, ok bool, err error)
	// Save replaces the checkpoint saved under name.
	Save(ctx context.Context, name string, cp Checkpoint) error
	// List returns every checkpoint of the store by name.
	List(ctx context.Context) (map[string]Checkpoint, error)
}

// ValidateName reports whether name can name a checkpoint.
func ValidateName(name string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("checkpoint: name %q: want 1 to 256 bytes", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:-", c) >= 0) {
			return fmt.Errorf("checkpoint: name %q: byte %q is not one of [A-Za-z0-9_.:-]", name, c)
		}
	}
	return nil
}

// Memory is a Store in memory, for tests. The zero value is ready to use.
type Memory struct {
	mu  sync.Mutex
	cps map[string]Checkpoint
	// saves counts Save calls, for tests.
	saves int
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{} }

// Load implements Store.
func (m *Memory) Load(ctx context.Context, name string) (Checkpoint, bool, error) {
	if err := ValidateName(name); err != nil {
		return Checkpoint{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[name]
	return cp, ok, ctx.Err()
}

// Save implements Store.
func (m *Memory) Save(ctx context.Context, name string, cp Checkpoint) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cps == nil {
		m.cps = make(map[string]Checkpoint)
	}
	m.cps[name] = cp
	m.saves++
	return nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context) (map[string]Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.cps), ctx.Err()
}

// Saves returns how many times Save succeeded.
func (m *Memory) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}

// Etcd is a Store in etcd: the checkpoint named n is the JSON of a
// Checkpoint at key prefix+n.
type Etcd struct {
	cli    *clientv3.Client
	prefix string
	guard  []clientv3.Cmp
}

// EtcdOption configures an Etcd store.
type EtcdOption func(*Etcd)

// WithGuard makes every Save a transaction that writes only if all cmps
// hold, and fails with ErrFenced otherwise. Jobs pass the comparison that
// says this migrator still holds the job's claim, e.g.
// clientv3.Compare(clientv3.LeaseValue(claimKey), "=", lease), so a
// migrator that lost the job cannot move its checkpoints.
func WithGuard(cmps ...clientv3.Cmp) EtcdOption {
	return func(e *Etcd) { e.guard = append(e.guard, cmps...) }
}

// NewEtcd returns a store keeping checkpoints under prefix, which should
// end in "/" (e.g. topology.NewKeys(cluster).Job(id)+"/shards/").
func NewEtcd(cli *clientv3.Client, prefix string, opts ...EtcdOption) *Etcd {
	e := &Etcd{cli: cli, prefix: prefix}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Load implements Store.
func (e *Etcd) Load(ctx context.Context, name string) (Checkpoint, bool, error) {
	if err := ValidateName(name); err != nil {
		return Checkpoint{}, false, err
	}
	resp, err := e.cli.Get(ctx, e.prefix+name)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: read %s%s: %w", e.prefix, name, err)
	}
	if len(resp.Kvs) == 0 {
		return Checkpoint{}, false, nil
	}
	var cp Checkpoint
	if err := json.Unmarshal(resp.Kvs[0].Value, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: decode %s%s: %w", e.prefix, name, err)
	}
	return cp, true, nil
}

// Save implements Store.
func (e *Etcd) Save(ctx context.Context, name string, cp Checkpoint) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("checkpoint: encode %s: %w", name, err)
	}
	key := e.prefix + name
	resp, err := e.cli.Txn(ctx).If(e.guard...).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w (checkpoint %s not written)", ErrFenced, key)
	}
	return nil
}

// List implements Store.
func (e *Etcd) List(ctx context.Context) (map[string]Checkpoint, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", e.prefix, err)
	}
	out := make(map[string]Checkpoint, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), e.prefix)
		if strings.Contains(name, "/") {
			continue // a deeper key is not one of ours
		}
		var cp Checkpoint
		if err := json.Unmarshal(kv.Value, &cp); err != nil {
			return nil, fmt.Errorf("checkpoint: decode %s: %w", kv.Key, err)
		}
		out[name] = cp
	}
	return out, nil
}
