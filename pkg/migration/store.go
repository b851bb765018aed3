package migration

import (
	"context"
	"errors"
	"fmt"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Errors of the store; use errors.Is.
var (
	// ErrNotFound: the table has no migration.
	ErrNotFound = errors.New("migration: not found")
	// ErrExists: the table already has a migration.
	ErrExists = errors.New("migration: already exists")
	// ErrConflict: other changes kept winning the compare-and-swap; retry.
	ErrConflict = errors.New("migration: concurrent change")
	// ErrInvalid: a name or argument is malformed.
	ErrInvalid = errors.New("migration: invalid argument")
)

// transitionAttempts bounds the compare-and-swap retries of Transition.
const transitionAttempts = 5

// Store reads and writes the migration documents and their side records
// (queue, mismatches, figures, imports) in etcd.
type Store struct {
	Client *clientv3.Client
	Keys   Keys
}

// NewStore returns a Store for cluster.
func NewStore(cli *clientv3.Client, cluster string) *Store {
	return &Store{Client: cli, Keys: NewKeys(cluster)}
}

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

func encodeMigration(m *migrationv1.Migration) ([]byte, error) {
	c := proto.Clone(m).(*migrationv1.Migration)
	c.Revision = 0
	b, err := jsonOpts.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("migration: encode %s: %w", m.GetTable(), err)
	}
	return b, nil
}

func decodeMigration(kv *mvccpb.KeyValue) (*migrationv1.Migration, error) {
	m := &migrationv1.Migration{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, m); err != nil {
		return nil, fmt.Errorf("migration: decode %s: %w", kv.Key, err)
	}
	m.Revision = kv.ModRevision
	return m, nil
}

// Create stores a new migration (m.Table names it); ErrExists when the table
// has one. The returned copy carries its revision.
func (s *Store) Create(ctx context.Context, m *migrationv1.Migration) (*migrationv1.Migration, error) {
	if err := validName("table", m.GetTable()); err != nil {
		return nil, err
	}
	b, err := encodeMigration(m)
	if err != nil {
		return nil, err
	}
	key := s.Keys.Migration(m.GetTable())
	resp, err := s.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return nil, fmt.Errorf("migration: create %s: %w", m.GetTable(), err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("%w: table %s", ErrExists, m.GetTable())
	}
	out := proto.Clone(m).(*migrationv1.Migration)
	out.Revision = resp.Header.Revision
	return out, nil
}

// Get reads table's migration; ErrNotFound when it has none.
func (s *Store) Get(ctx context.Context, table string) (*migrationv1.Migration, error) {
	resp, err := s.Client.Get(ctx, s.Keys.Migration(table))
	if err != nil {
		return nil, fmt.Errorf("migration: get %s: %w", table, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: table %s", ErrNotFound, table)
	}
	return decodeMigration(resp.Kvs[0])
}

// List returns every migration in table order.
func (s *Store) List(ctx context.Context) ([]*migrationv1.Migration, error) {
	resp, err := s.Client.Get(ctx, s.Keys.TablesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("migration: list: %w", err)
	}
	out := make([]*migrationv1.Migration, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, err := decodeMigration(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Transition changes table's migration atomically: fn gets a copy of the
// stored state and edits it (appending to its history, see Apply); the
// result is written only if nobody changed the migration since it was read.
// A lost race reruns fn on the new state, a few times, then gives up with
// ErrConflict. An error from fn is returned unchanged and nothing is
// written. ErrNotFound when the table has no migration.
func (s *Store) Transition(ctx context.Context, table string, fn func(m *migrationv1.Migration) error) (*migrationv1.Migration, error) {
	key := s.Keys.Migration(table)
	for range transitionAttempts {
		cur, err := s.Get(ctx, table)
		if err != nil {
			return nil, err
		}
		rev := cur.Revision
		if err := fn(cur); err != nil {
			return nil, err
		}
		cur.Table = table
		b, err := encodeMigration(cur)
		if err != nil {
			return nil, err
		}
		resp, err := s.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return nil, fmt.Errorf("migration: change %s: %w", table, err)
		}
		if resp.Succeeded {
			cur.Revision = resp.Header.Revision
			return cur, nil
		}
	}
	return nil, fmt.Errorf("%w: table %s changed %d times while being changed", ErrConflict, table, transitionAttempts)
}

// Delete removes table's migration (not its queue, sample or records);
// ErrNotFound when it has none.
func (s *Store) Delete(ctx context.Context, table string) error {
	resp, err := s.Client.Delete(ctx, s.Keys.Migration(table))
	if err != nil {
		return fmt.Errorf("migration: delete %s: %w", table, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%w: table %s", ErrNotFound, table)
	}
	return nil
}

// Change is one phase change, for Apply.
type Change struct {
	// To and Percent are the phase and cutover percentage after the change.
	To      migrationv1.Phase
	Percent uint32
	// Who made it, and why.
	Who    string
	Reason string
	// Forced is true when failing criteria (FailedCriteria) were overridden.
	Forced         bool
	FailedCriteria []string
	// Time of the change. Default: now.
	Time time.Time
}

// Apply moves m to c.To/c.Percent and appends the change to its history.
// The phase time becomes c.Time; entering a phase that mirrors writes from
// one that does not (PROXY → MIRROR, or a start in a mirroring phase) also
// sets the mirror time, which an import's export must follow to count. It
// checks nothing: deciding whether a change is allowed is the caller's.
func Apply(m *migrationv1.Migration, c Change) {
	if c.Time.IsZero() {
		c.Time = time.Now()
	}
	ts := timestamppb.New(c.Time)
	from := &migrationv1.Migration{Phase: m.GetPhase(), CutoverPercent: m.GetCutoverPercent()}
	m.History = append(m.History, &migrationv1.PhaseChange{
		From:           m.GetPhase(),
		FromPercent:    m.GetCutoverPercent(),
		To:             c.To,
		ToPercent:      c.Percent,
		Who:            c.Who,
		Time:           ts,
		Reason:         c.Reason,
		Forced:         c.Forced,
		FailedCriteria: c.FailedCriteria,
	})
	m.Phase = c.To
	m.CutoverPercent = c.Percent
	m.PhaseTime = ts
	if MirrorsWrites(m) && !MirrorsWrites(from) {
		m.MirrorTime = ts
	}
}
