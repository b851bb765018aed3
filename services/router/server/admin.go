package server

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// etcdCallTimeout bounds an admin call's etcd request: etcd answers in
// milliseconds when it is up, and a caller is better served by Unavailable
// than by waiting out its own deadline during an outage.
const etcdCallTimeout = 5 * time.Second

// errEtcdUnavailable marks admin calls refused because etcd does not
// answer; use errors.Is. It maps to Unavailable.
var errEtcdUnavailable = errors.New("etcd unreachable")

// etcdContext returns the context for an admin call's etcd request, or
// errEtcdUnavailable at once when the router already knows etcd is down.
func (s *Server) etcdContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.watcher.Stale() {
		return nil, nil, fmt.Errorf("%w: unreachable since %s; this call needs etcd, retry when it is back",
			errEtcdUnavailable, s.watcher.LastUnreachable().UTC().Format(time.RFC3339))
	}
	ctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
	return ctx, cancel, nil
}

// etcdError marks err as errEtcdUnavailable when the etcd request timed out
// or found no etcd while the caller's own context (parent) is still live.
func etcdError(parent context.Context, err error) error {
	if err == nil || parent.Err() != nil {
		return err
	}
	if c := status.Code(err); errors.Is(err, context.DeadlineExceeded) || c == codes.Unavailable || c == codes.DeadlineExceeded {
		// %v, not %w: the caller's deadline did not pass, so this must not
		// map to DeadlineExceeded.
		return fmt.Errorf("%w: %v", errEtcdUnavailable, err)
	}
	return err
}

// routingSnapshot is the topology requests are routed by now: the cluster
// view's, which follows the watcher's a moment later.
func (s *Server) routingSnapshot() *topology.Snapshot {
	if s.cluster != nil {
		return s.cluster.View().Snapshot
	}
	return s.watcher.Snapshot()
}

type adminService struct {
	kvv1.UnimplementedAdminServiceServer
	s *Server
}

func attrType(t kvv1.AttributeType) (string, error) {
	switch t {
	case kvv1.AttributeType_ATTRIBUTE_TYPE_S:
		return "S", nil
	case kvv1.AttributeType_ATTRIBUTE_TYPE_N:
		return "N", nil
	case kvv1.AttributeType_ATTRIBUTE_TYPE_B:
		return "B", nil
	}
	return "", invalidf("key_schema: attribute type must be S, N or B")
}

func attrTypeProto(t string) kvv1.AttributeType {
	switch t {
	case "S":
		return kvv1.AttributeType_ATTRIBUTE_TYPE_S
	case "N":
		return kvv1.AttributeType_ATTRIBUTE_TYPE_N
	case "B":
		return kvv1.AttributeType_ATTRIBUTE_TYPE_B
	}
	return kvv1.AttributeType_ATTRIBUTE_TYPE_UNSPECIFIED
}

func tableProto(t topology.Table) *kvv1.Table {
	out := &kvv1.Table{
		Name: t.Name, Id: t.ID, CreateTime: timestamppb.New(t.CreateTime),
		TtlAttribute: t.TTLAttribute, MaxItemBytes: t.MaxItemBytes,
		ReadCapacityUnits: t.ReadCapacityUnits, WriteCapacityUnits: t.WriteCapacityUnits,
		BillingMode:    enumOf(billingNames, t.BillingMode, kvv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST),
		WriteIsolation: enumOf(isolationNames, t.Isolation(), kvv1.WriteIsolation_WRITE_ISOLATION_ALWAYS_USE_LWT),
	}
	if t.DefaultTTL > 0 {
		out.DefaultTtl = durationpb.New(t.DefaultTTL)
	}
	if ks := t.KeySchema; ks != nil {
		out.KeySchema = &kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: ks.PartitionKey.Name, Type: attrTypeProto(ks.PartitionKey.Type)}}
		if ks.SortKey != nil {
			out.KeySchema.SortKey = &kvv1.KeyAttribute{Name: ks.SortKey.Name, Type: attrTypeProto(ks.SortKey.Type)}
		}
	}
	return out
}

// maxAttributeName is DynamoDB's limit on key attribute names.
const maxAttributeName = 255

func checkAttributeName(name, where string) error {
	switch {
	case !utf8.ValidString(name):
		return invalidf("%s.name: not valid UTF-8", where)
	case len(name) > maxAttributeName:
		return invalidf("%s.name: %d bytes, at most %d", where, len(name), maxAttributeName)
	}
	return nil
}

// checkTableName validates a table name given in field where.
func checkTableName(name, where string) error {
	if !utf8.ValidString(name) {
		return invalidf("%s: not valid UTF-8", where)
	}
	if err := topology.ValidateTableName(name); err != nil {
		return invalidf("%s: %v", where, err)
	}
	return nil
}

// createTableSpec validates a CreateTableRequest and returns the table to
// create.
func createTableSpec(req *kvv1.CreateTableRequest) (topology.Table, error) {
	if err := checkTableName(req.GetName(), "name"); err != nil {
		return topology.Table{}, err
	}
	t := topology.Table{Name: req.GetName()}
	settings := tableSettings{isolation: req.GetWriteIsolation(), billing: req.GetBillingMode()}
	if n := req.GetMaxItemBytes(); n != 0 {
		settings.maxItemBytes = &n
	}
	if req.GetBillingMode() == kvv1.BillingMode_BILLING_MODE_PROVISIONED {
		rcu, wcu := req.GetReadCapacityUnits(), req.GetWriteCapacityUnits()
		settings.rcu, settings.wcu = &rcu, &wcu
	} else if req.GetReadCapacityUnits() != 0 || req.GetWriteCapacityUnits() != 0 {
		return t, invalidf("read_capacity_units, write_capacity_units: only with BILLING_MODE_PROVISIONED")
	}
	if err := settings.check(); err != nil {
		return t, err
	}
	settings.apply(&t)
	if d := req.GetDefaultTtl(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return t, invalidf("default_ttl: must be a non-negative duration")
		}
		t.DefaultTTL = d.AsDuration()
	}
	if ks := req.GetKeySchema(); ks != nil && ks.GetPartitionKey().GetName() != "" {
		if err := checkAttributeName(ks.GetPartitionKey().GetName(), "key_schema.partition_key"); err != nil {
			return t, err
		}
		pt, err := attrType(ks.GetPartitionKey().GetType())
		if err != nil {
			return t, err
		}
		t.KeySchema = &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: ks.GetPartitionKey().GetName(), Type: pt}}
		if sk := ks.GetSortKey(); sk.GetName() != "" {
			if err := checkAttributeName(sk.GetName(), "key_schema.sort_key"); err != nil {
				return t, err
			}
			st, err := attrType(sk.GetType())
			if err != nil {
				return t, err
			}
			t.KeySchema.SortKey = &topology.KeyAttribute{Name: sk.GetName(), Type: st}
		}
	}
	return t, nil
}

func (a *adminService) CreateTable(ctx context.Context, req *kvv1.CreateTableRequest) (*kvv1.CreateTableResponse, error) {
	t, err := createTableSpec(req)
	if err != nil {
		return nil, toStatus(err)
	}
	created, err := a.s.CreateTable(ctx, t)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.CreateTableResponse{Table: tableProto(created)}, nil
}

// CreateTable stores a new table and returns once this router routes with
// it, so a write sent right after it returns finds the table. AdminService
// and the DynamoDB endpoint both create tables through it.
func (s *Server) CreateTable(ctx context.Context, t topology.Table) (topology.Table, error) {
	ectx, cancel, err := s.etcdContext(ctx)
	if err != nil {
		return topology.Table{}, err
	}
	created, err := s.store.CreateTable(ectx, t)
	cancel()
	if err != nil {
		return topology.Table{}, etcdError(ctx, err)
	}
	s.waitRouted(created.Name, func(t topology.Table, ok bool) bool { return ok && t.ID == created.ID })
	return created, nil
}

// waitRouted waits (at most 5 s) until the table as this router routes by
// it satisfies done.
func (s *Server) waitRouted(name string, done func(topology.Table, bool) bool) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		t, ok := s.routingSnapshot().Tables[name]
		if done(t, ok) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (a *adminService) DeleteTable(ctx context.Context, req *kvv1.DeleteTableRequest) (*kvv1.DeleteTableResponse, error) {
	if err := checkTableName(req.GetName(), "name"); err != nil {
		return nil, toStatus(err)
	}
	t, err := a.s.DeleteTable(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.DeleteTableResponse{Table: tableProto(t)}, nil
}

// DeleteTable deletes a table and returns once this router no longer
// routes to it.
func (s *Server) DeleteTable(ctx context.Context, name string) (topology.Table, error) {
	ectx, cancel, err := s.etcdContext(ctx)
	if err != nil {
		return topology.Table{}, err
	}
	t, err := s.store.DeleteTable(ectx, name)
	cancel()
	if err != nil {
		return topology.Table{}, etcdError(ctx, err)
	}
	s.waitRouted(t.Name, func(cur topology.Table, ok bool) bool { return !ok || cur.ID != t.ID })
	return t, nil
}

// UpdateTable changes a table's settings with change (atomically) and
// returns once this router routes by the new document.
func (s *Server) UpdateTable(ctx context.Context, name string, change func(*topology.Table) error) (topology.Table, error) {
	ectx, cancel, err := s.etcdContext(ctx)
	if err != nil {
		return topology.Table{}, err
	}
	t, err := s.store.UpdateTable(ectx, name, change)
	cancel()
	if err != nil {
		return topology.Table{}, etcdError(ctx, err)
	}
	s.waitRouted(t.Name, func(cur topology.Table, ok bool) bool {
		return !ok || cur.ID != t.ID || reflect.DeepEqual(cur, t)
	})
	return t, nil
}

func (a *adminService) UpdateTable(ctx context.Context, req *kvv1.UpdateTableRequest) (*kvv1.UpdateTableResponse, error) {
	if err := checkTableName(req.GetName(), "name"); err != nil {
		return nil, toStatus(err)
	}
	var settings tableSettings
	if req.TtlAttribute != nil {
		settings.ttl = req.TtlAttribute
	}
	if req.MaxItemBytes != nil {
		settings.maxItemBytes = req.MaxItemBytes
	}
	settings.isolation = req.GetWriteIsolation()
	settings.billing = req.GetBillingMode()
	settings.rcu, settings.wcu = req.ReadCapacityUnits, req.WriteCapacityUnits
	if err := settings.check(); err != nil {
		return nil, toStatus(err)
	}
	t, err := a.s.UpdateTable(ctx, req.GetName(), func(t *topology.Table) error {
		settings.apply(t)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.UpdateTableResponse{Table: tableProto(t)}, nil
}

// tableSettings are the settings CreateTable and UpdateTable take besides
// name and key schema; nil or unspecified fields are left as they are.
type tableSettings struct {
	ttl          *string
	maxItemBytes *uint64
	isolation    kvv1.WriteIsolation
	billing      kvv1.BillingMode
	rcu, wcu     *uint64
}

func (ts tableSettings) check() error {
	if ts.ttl != nil && *ts.ttl != "" {
		if err := checkAttributeName(*ts.ttl, "ttl_attribute"); err != nil {
			return err
		}
	}
	if ts.maxItemBytes != nil && *ts.maxItemBytes > topology.MaxItemBytesLimit {
		return invalidf("max_item_bytes: %d, at most %d (64 MiB)", *ts.maxItemBytes, topology.MaxItemBytesLimit)
	}
	if _, ok := isolationNames[ts.isolation]; !ok && ts.isolation != kvv1.WriteIsolation_WRITE_ISOLATION_UNSPECIFIED {
		return invalidf("write_isolation: unknown value %d", ts.isolation)
	}
	if _, ok := billingNames[ts.billing]; !ok && ts.billing != kvv1.BillingMode_BILLING_MODE_UNSPECIFIED {
		return invalidf("billing_mode: unknown value %d", ts.billing)
	}
	return nil
}

func (ts tableSettings) apply(t *topology.Table) {
	if ts.ttl != nil {
		t.TTLAttribute = *ts.ttl
	}
	if ts.maxItemBytes != nil {
		t.MaxItemBytes = *ts.maxItemBytes
	}
	if name, ok := isolationNames[ts.isolation]; ok {
		t.WriteIsolation = name
	}
	if name, ok := billingNames[ts.billing]; ok {
		t.BillingMode = name
	}
	if ts.rcu != nil {
		t.ReadCapacityUnits = *ts.rcu
	}
	if ts.wcu != nil {
		t.WriteCapacityUnits = *ts.wcu
	}
}

var isolationNames = map[kvv1.WriteIsolation]string{
	kvv1.WriteIsolation_WRITE_ISOLATION_ALWAYS_USE_LWT:    topology.IsolationAlwaysLock,
	kvv1.WriteIsolation_WRITE_ISOLATION_ONLY_RMW_USES_LWT: topology.IsolationOnlyRMW,
	kvv1.WriteIsolation_WRITE_ISOLATION_FORBID_RMW:        topology.IsolationForbidRMW,
	kvv1.WriteIsolation_WRITE_ISOLATION_UNSAFE_RMW:        topology.IsolationUnsafeRMW,
}

var billingNames = map[kvv1.BillingMode]string{
	kvv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST: "PAY_PER_REQUEST",
	kvv1.BillingMode_BILLING_MODE_PROVISIONED:     "PROVISIONED",
}

func enumOf[E comparable](names map[E]string, name string, def E) E {
	for e, n := range names {
		if n == name {
			return e
		}
	}
	return def
}

func (a *adminService) ListTables(ctx context.Context, req *kvv1.ListTablesRequest) (*kvv1.ListTablesResponse, error) {
	snap := a.s.watcher.Snapshot()
	resp := &kvv1.ListTablesResponse{}
	for _, t := range snap.Tables {
		if canRead(ctx, t.Name) {
			resp.Tables = append(resp.Tables, tableProto(t))
		}
	}
	sort.Slice(resp.Tables, func(i, j int) bool { return resp.Tables[i].Name < resp.Tables[j].Name })
	return resp, nil
}

func (a *adminService) DescribeTable(ctx context.Context, req *kvv1.DescribeTableRequest) (*kvv1.DescribeTableResponse, error) {
	if err := checkTableName(req.GetName(), "name"); err != nil {
		return nil, toStatus(err)
	}
	t, ok := a.s.watcher.Snapshot().Tables[req.GetName()]
	if !ok {
		return nil, toStatus(fmt.Errorf("%w: %q", topology.ErrTableNotFound, req.GetName()))
	}
	return &kvv1.DescribeTableResponse{Table: tableProto(t)}, nil
}

func (a *adminService) ClusterStatus(ctx context.Context, req *kvv1.ClusterStatusRequest) (*kvv1.ClusterStatusResponse, error) {
	v := a.s.cluster.View()
	snap := v.Snapshot
	resp := &kvv1.ClusterStatusResponse{
		Cluster: a.s.cfg.Cluster, PlacementEpoch: v.Epoch, TopologyStale: a.s.watcher.Stale(), RouterId: a.s.cfg.ID,
	}
	if snap.Config != nil {
		resp.Partitions = snap.Config.Partitions
		resp.ReplicationFactor = uint32(snap.Config.ReplicationFactor)
	}
	resp.Nodes = sortedStatuses(nodeStatuses(snap.Placement, snap.Nodes))
	if snap.Placement != nil {
		resp.Rebalance = rebalanceStatus(snap, time.Now())
	}
	if a.s.ctrl != nil {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if id, err := a.s.ctrl.Leader(lctx); err == nil {
			resp.ControllerId = id
		}
	}
	return resp, nil
}
