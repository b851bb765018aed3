package topology

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Sentinel errors; use errors.Is.
var (
	// ErrTableExists is returned when creating a table whose name is taken.
	ErrTableExists = errors.New("topology: table already exists")
	// ErrTableNotFound is returned for an unknown table.
	ErrTableNotFound = errors.New("topology: table not found")
	// ErrEpochConflict is returned when the placement changed concurrently.
	ErrEpochConflict = errors.New("topology: placement epoch conflict")
	// ErrConfigMismatch is returned when the stored cluster config differs
	// from the one a process was started with.
	ErrConfigMismatch = errors.New("topology: cluster config mismatch")
	// ErrNodeIDInUse is returned by Register when the node id is registered
	// by another incarnation (another data directory) of the node.
	ErrNodeIDInUse = errors.New("topology: node id registered by another incarnation")
	// ErrIdentityConflict is returned by ClaimNodeIdentity when the claim
	// changed since it was read.
	ErrIdentityConflict = errors.New("topology: node identity claimed concurrently")
)

// ClusterConfig is written once, when the cluster is bootstrapped, and
// never changed: partition numbers are baked into every storage key.
type ClusterConfig struct {
	// Partitions is P, the fixed number of partitions.
	Partitions uint32 `json:"partitions"`
	// ReplicationFactor is RF.
	ReplicationFactor int `json:"replication_factor"`
	// HashFunction names the partition hash (placement.HashFunction).
	HashFunction string `json:"hash_function"`
	// CreateTime is when the cluster was bootstrapped.
	CreateTime time.Time `json:"create_time"`
}

// Validate reports every problem of c at once.
func (c ClusterConfig) Validate() error {
	var errs []error
	if c.Partitions == 0 || c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to 65536", c.Partitions))
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > 7 {
		errs = append(errs, fmt.Errorf("replication factor %d: want 1 to 7", c.ReplicationFactor))
	}
	if c.HashFunction == "" {
		errs = append(errs, errors.New("hash function is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: invalid cluster config: %w", err)
	}
	return nil
}

// NodeState is a storage node's self-reported state.
type NodeState string

// Node states.
const (
	NodeUp       NodeState = "up"
	NodeDraining NodeState = "draining"
)

// Node is a storage node's registration.
type Node struct {
	// ID is the node's stable identifier (survives restarts).
	ID string `json:"id"`
	// Address is the node's gRPC address (host:port).
	Address string `json:"address"`
	// Zone is the node's failure domain label; may be empty.
	Zone string `json:"zone,omitempty"`
	// CapacityBytes is the disk capacity the node offers.
	CapacityBytes uint64 `json:"capacity_bytes,omitempty"`
	// State is the node's state.
	State NodeState `json:"state"`
	// StartTime is when the node process started.
	StartTime time.Time `json:"start_time"`
	// Incarnation is the random id stamped into the node's data directory
	// when it was created: two processes registering one node id with
	// different incarnations run on different data, and the second is
	// refused. Empty for nodes from before data directories were stamped.
	Incarnation string `json:"incarnation,omitempty"`
	// PlacementEpoch is the placement epoch the node has seen; the
	// controller waits for every node and router to reach an epoch before
	// the next step of a move (Snapshot.Reached).
	PlacementEpoch uint64 `json:"placement_epoch,omitempty"`
	// UsedBytes is the space the node's store takes on disk, as last
	// reported (the node refreshes its registration every minute or so).
	UsedBytes uint64 `json:"used_bytes,omitempty"`
	// CacheHits and CacheMisses count the point reads the node's LIRS
	// cache served and missed since it started, reported with UsedBytes
	// (migration mode's cache hit ratio criterion sums them).
	CacheHits   uint64 `json:"cache_hits,omitempty"`
	CacheMisses uint64 `json:"cache_misses,omitempty"`
}

// NodeIdentity records which data directory is a node id: the
// incarnation its directory was stamped with. Unlike the registration it is
// not under a lease, so a directory that was replaced is still recognised
// as stale while the node is down.
type NodeIdentity struct {
	// NodeID is the node.
	NodeID string `json:"node_id"`
	// Incarnation is the random id stamped into the node's data directory.
	Incarnation string `json:"incarnation"`
	// ClaimTime is when the directory claimed the node id.
	ClaimTime time.Time `json:"claim_time"`
}

var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Validate reports every problem of n at once.
func (n Node) Validate() error {
	var errs []error
	if !nodeIDRE.MatchString(n.ID) {
		errs = append(errs, fmt.Errorf("node id %q: want 1 to 128 characters of [A-Za-z0-9_.-]", n.ID))
	}
	if n.Address == "" {
		errs = append(errs, errors.New("address is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: invalid node: %w", err)
	}
	return nil
}

// KeyAttribute names a DynamoDB key attribute and its type (S, N or B).
type KeyAttribute struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// KeySchema is a table's DynamoDB key schema; optional.
type KeySchema struct {
	PartitionKey KeyAttribute  `json:"partition_key"`
	SortKey      *KeyAttribute `json:"sort_key,omitempty"`
}

// Table is a table's document.
type Table struct {
	// Name is 3 to 255 characters of [A-Za-z0-9_.-].
	Name string `json:"name"`
	// ID is the etcd create revision of the table's key: unique, never
	// reused. Not stored in the document; filled in when read.
	ID uint64 `json:"-"`
	// KeySchema is the DynamoDB key schema, if any.
	KeySchema *KeySchema `json:"key_schema,omitempty"`
	// DefaultTTL applies to writes without an expiry; 0 means none.
	DefaultTTL time.Duration `json:"default_ttl,omitempty"`
	// CreateTime is when the table was created.
	CreateTime time.Time `json:"create_time"`
	// TTLAttribute names the attribute holding an item's expiry in Unix
	// epoch seconds (DynamoDB TTL); "" when off.
	TTLAttribute string `json:"ttl_attribute,omitempty"`
	// BillingMode is "PAY_PER_REQUEST" or "PROVISIONED" ("" reads as
	// PAY_PER_REQUEST), with the provisioned capacity units; recorded and
	// reported, never enforced.
	BillingMode        string `json:"billing_mode,omitempty"`
	ReadCapacityUnits  uint64 `json:"read_capacity_units,omitempty"`
	WriteCapacityUnits uint64 `json:"write_capacity_units,omitempty"`
	// MaxItemBytes is the DynamoDB endpoint's item size limit (DynamoDB's
	// way of counting); 0 means DefaultMaxItemBytes.
	MaxItemBytes uint64 `json:"max_item_bytes,omitempty"`
	// WriteIsolation is one of the WriteIsolation constants; "" is
	// IsolationAlwaysLock.
	WriteIsolation string `json:"write_isolation,omitempty"`
}

// Item size limits of the DynamoDB endpoint.
const (
	// DefaultMaxItemBytes is DynamoDB's 400 KB.
	DefaultMaxItemBytes = 400 << 10
	// MaxItemBytesLimit is Veltrix's value limit, 64 MiB.
	MaxItemBytesLimit = 64 << 20
)

// The write isolation modes (named as ScyllaDB Alternator's; see
// docs/design.md, "Write isolation").
const (
	IsolationAlwaysLock = "always_use_lwt"
	IsolationOnlyRMW    = "only_rmw_uses_lwt"
	IsolationForbidRMW  = "forbid_rmw"
	IsolationUnsafeRMW  = "unsafe_rmw"
)

// ItemLimit is the table's item size limit in bytes.
func (t Table) ItemLimit() int {
	if t.MaxItemBytes == 0 {
		return DefaultMaxItemBytes
	}
	return int(t.MaxItemBytes)
}

// Isolation is the table's write isolation mode.
func (t Table) Isolation() string {
	if t.WriteIsolation == "" {
		return IsolationAlwaysLock
	}
	return t.WriteIsolation
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)

// ValidateTableName checks a table name against DynamoDB's rules.
func ValidateTableName(name string) error {
	if !tableNameRE.MatchString(name) {
		return fmt.Errorf("table name %q: want 3 to 255 characters of [A-Za-z0-9_.-]", name)
	}
	return nil
}
