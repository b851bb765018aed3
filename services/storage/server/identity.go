package server

// Node identity is data, not a flag. A data directory is stamped, when the
// node first starts on it, with the cluster and node it belongs to and a
// random incarnation id. The stamp is kept twice: in the IDENTITY file and
// in a record inside Pebble, so a directory whose Pebble store was wiped or
// swapped (or whose file was lost) is noticed. Only a new node may stamp a
// directory: a node id that holds partitions in the placement, or that a
// live process has registered, is refused on an empty directory, because
// serving its partitions from nothing would answer reads of acknowledged
// writes with "not found" (unless the operator ran `veltrix node replace`:
// a replacing node id stamps an empty directory and backfills its
// partitions in place). A node id the cluster removed or declared dead is
// refused on a directory that holds data. The directory also claims the node id in etcd
// (topology.NodeIdentity, no lease), so a directory that another one has
// replaced is refused even while the newer one is down. No flag overrides
// this.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// ErrIdentity is returned, wrapped, when the data directory does not belong
// to the node being started: it is empty (or unstamped) while the node id
// holds partitions, it is stamped for another node or cluster, its stamp is
// corrupt, or another incarnation of the node id is running. Use errors.Is.
var ErrIdentity = errors.New("storage: refusing to start as this node")

const (
	// stampFile is the identity stamp in the data directory.
	stampFile = "IDENTITY"
	// legacyIDFile held the node id before directories were stamped; it
	// is still written, for older builds.
	legacyIDFile = "NODE_ID"
	// stampMeta names the engine metadata record holding the same stamp.
	stampMeta = "identity"
	// stampFormat is the stamp's format version.
	stampFormat = 1
	// snapshotFile is the last topology the node saw, persisted so it can
	// restart while etcd is unreachable (topology.WriteSnapshotFile).
	snapshotFile = "topology.json"
	// replaceHint points the operator at the documented procedure.
	replaceHint = `see README, "Replacing a node"`
)

// stamp is a data directory's identity.
type stamp struct {
	// Format is stampFormat.
	Format int `json:"format"`
	// Cluster is the cluster's name (etcd key prefix), for people.
	Cluster string `json:"cluster"`
	// ClusterID is the cluster's random id (topology.Store.EnsureClusterID).
	ClusterID string `json:"cluster_id"`
	// NodeID is the node the directory belongs to.
	NodeID string `json:"node_id"`
	// Incarnation is random, chosen when the directory was stamped; the
	// node registers with it.
	Incarnation string `json:"incarnation"`
	// CreateTime is when the directory was stamped.
	CreateTime time.Time `json:"create_time"`
}

func (s stamp) validate() error {
	var errs []error
	if s.Format != stampFormat {
		errs = append(errs, fmt.Errorf("format %d, this build reads %d", s.Format, stampFormat))
	}
	if s.ClusterID == "" {
		errs = append(errs, errors.New("cluster_id is empty"))
	}
	if s.NodeID == "" {
		errs = append(errs, errors.New("node_id is empty"))
	}
	if s.Incarnation == "" {
		errs = append(errs, errors.New("incarnation is empty"))
	}
	return errors.Join(errs...)
}

func (s stamp) String() string {
	return fmt.Sprintf("node %s of cluster %s (id %s, incarnation %s, stamped %s)",
		s.NodeID, s.Cluster, s.ClusterID, s.Incarnation, s.CreateTime.Format(time.RFC3339))
}

func (s stamp) same(o stamp) bool {
	return s.Format == o.Format && s.Cluster == o.Cluster && s.ClusterID == o.ClusterID &&
		s.NodeID == o.NodeID && s.Incarnation == o.Incarnation && s.CreateTime.Equal(o.CreateTime)
}

func newStamp(cluster, clusterID, nodeID string, now time.Time) (stamp, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return stamp{}, err
	}
	return stamp{Format: stampFormat, Cluster: cluster, ClusterID: clusterID, NodeID: nodeID,
		Incarnation: hex.EncodeToString(r[:]), CreateTime: now.UTC()}, nil
}

// decodeStamp parses a stamp read from where (for the error message).
func decodeStamp(b []byte, where string) (*stamp, error) {
	var s stamp
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&s)
	if err == nil {
		err = s.validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the identity stamp in %s is corrupt (%v). It records which node and cluster the directory belongs to and is never re-created over existing data: restore it from the node's backup, or start a new node with a new node id on a fresh directory (%s)",
			ErrIdentity, where, err, replaceHint)
	}
	return &s, nil
}

// readStampFile reads dir's stamp file; nil if there is none.
func readStampFile(dir string) (*stamp, error) {
	path := filepath.Join(dir, stampFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read %s: %w", path, err)
	}
	return decodeStamp(b, path)
}

// writeStampFile writes dir's stamp file atomically and durably: a
// temporary file, fsynced, renamed over, and the directory fsynced.
func writeStampFile(dir string, s stamp) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(dir, stampFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: sync %s: %w", dir, err)
	}
	serr = d.Sync()
	if err := errors.Join(serr, d.Close()); err != nil {
		return fmt.Errorf("storage: sync %s: %w", dir, err)
	}
	return nil
}

// readLegacyID reads the NODE_ID file of a directory from before stamps;
// "" if there is none.
func readLegacyID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, legacyIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: read node id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeLegacyID writes the NODE_ID file older builds read.
func writeLegacyID(dir, id string) error {
	path := filepath.Join(dir, legacyIDFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	return nil
}

// resolveNodeID returns the configured id, or the id the directory was
// stamped with, or a new random one for a fresh directory. A configured id
// that differs from the directory's is refused: the data belongs to another
// node.
func resolveNodeID(dir, configured string, file *stamp, legacyID string) (string, error) {
	stored := legacyID
	if file != nil {
		stored = file.NodeID
	}
	switch {
	case stored != "" && configured != "" && configured != stored:
		return "", fmt.Errorf("%w: --node-id %q but %s holds the data of node %q. Start node %q on its own directory, or a new node on a fresh directory (%s)",
			ErrIdentity, configured, dir, stored, configured, replaceHint)
	case stored != "":
		return stored, nil
	case configured != "":
		return configured, nil
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return "n-" + hex.EncodeToString(r[:]), nil
}

// dirState is what the data directory says about its identity.
type dirState struct {
	dir string
	// file is the IDENTITY stamp, nil if absent.
	file *stamp
	// pebble is the stamp recorded in Pebble, nil if absent.
	pebble *stamp
	// legacyID is the NODE_ID of a directory from before stamps, or "".
	legacyID string
	// hasData is whether Pebble holds any item.
	hasData bool
}

// clusterState is what etcd says about the node id.
type clusterState struct {
	name, id string
	// held is the number of partitions the node id holds in the placement.
	held int
	// live is the node id's current registration, nil if none.
	live *topology.Node
	// claimed is the incarnation of the directory that last claimed the
	// node id (topology.NodeIdentity), "" if none did.
	claimed string
	// member is the node id's membership state in the placement ("" when
	// the placement does not list it).
	member placement.MemberState
}

// refuseMember refuses a non-empty directory of a node the cluster has
// removed or declared dead; nil for any other state.
func refuseMember(id, dir string, c clusterState) error {
	switch c.member {
	case placement.MemberRemoved:
		return fmt.Errorf("%w: node %s was removed from cluster %s (id %s) and %s holds its old data, which must not be served again. A removed node id may join again only as a new node on an empty data directory: start it on a fresh directory (%s)",
			ErrIdentity, id, c.name, c.id, dir, replaceHint)
	case placement.MemberDead:
		return fmt.Errorf("%w: node %s was declared dead in cluster %s (id %s): its partitions are being re-created on other nodes and the data in %s is out of date. To bring it back, run `veltrix node replace %s`, then start it on an empty data directory: it backfills its partitions from the other replicas (%s)",
			ErrIdentity, id, c.name, c.id, dir, id, replaceHint)
	}
	return nil
}

// checkIdentity decides whether node id may run on the directory d in
// cluster c. It returns the stamp to run with and whether it is new (the
// caller writes it before registering), or an error wrapping ErrIdentity
// that tells the operator what to do.
func checkIdentity(id string, d dirState, c clusterState, now time.Time) (st stamp, create bool, adopted bool, err error) {
	switch {
	case d.file != nil && d.pebble != nil:
		if !d.file.same(*d.pebble) {
			return stamp{}, false, false, fmt.Errorf("%w: %s/%s says %s but its Pebble store says %s: the stamp file and the data come from different directories. Restore the directory of node %s as one piece (%s)",
				ErrIdentity, d.dir, stampFile, d.file, d.pebble, id, replaceHint)
		}
		st = *d.file
	case d.file != nil:
		return stamp{}, false, false, fmt.Errorf("%w: %s/%s says %s but the Pebble store in %s has no stamp: its data was wiped or replaced, and serving it would answer reads of existing data with not-found. To bring node %s back, restore its whole data directory; to replace it, start a new node with a new node id on a fresh directory (%s)",
			ErrIdentity, d.dir, stampFile, d.file, d.dir, id, replaceHint)
	case d.pebble != nil:
		b, _ := json.Marshal(d.pebble)
		return stamp{}, false, false, fmt.Errorf("%w: the Pebble store in %s is stamped for %s but %s/%s is missing. If this is that node's intact directory, restore the file (its content: %s); otherwise start a new node with a new node id on a fresh directory (%s)",
			ErrIdentity, d.dir, d.pebble, d.dir, stampFile, b, replaceHint)
	}
	if d.file != nil {
		switch {
		case st.ClusterID != c.id:
			return stamp{}, false, false, fmt.Errorf("%w: %s belongs to cluster %s (id %s), not to cluster %s (id %s) that etcd holds: its data must not be served here. Point the node at its own cluster, or start a new node with a new node id on a fresh directory (%s)",
				ErrIdentity, d.dir, st.Cluster, st.ClusterID, c.name, c.id, replaceHint)
		case st.NodeID != id:
			return stamp{}, false, false, fmt.Errorf("%w: --node-id %q but %s holds the data of node %q (%s)", ErrIdentity, id, d.dir, st.NodeID, replaceHint)
		case c.claimed != "" && c.claimed != st.Incarnation:
			return stamp{}, false, false, fmt.Errorf("%w: %s was node %s (incarnation %s), but another data directory (incarnation %s) has become node %s since: this one is stale. Start the node on its current directory, or start a new node with a new node id on a fresh directory (%s)",
				ErrIdentity, d.dir, id, st.Incarnation, c.claimed, id, replaceHint)
		case c.live != nil && c.live.Incarnation != "" && c.live.Incarnation != st.Incarnation:
			return stamp{}, false, false, fmt.Errorf("%w: node %s is registered at %s by another data directory (incarnation %s; %s has incarnation %s). Two directories must not serve as one node: stop the other process, or start this one under a new node id on a fresh directory (%s)",
				ErrIdentity, id, c.live.Address, c.live.Incarnation, d.dir, st.Incarnation, replaceHint)
		}
		if err := refuseMember(id, d.dir, c); err != nil {
			return stamp{}, false, false, err
		}
		return st, false, false, nil
	}
	if d.hasData {
		if err := refuseMember(id, d.dir, c); err != nil {
			return stamp{}, false, false, err
		}
	}

	// Not stamped.
	if d.legacyID != "" && d.hasData && c.claimed == "" {
		// A directory from before stamps, with its data: adopt it.
		st, err = newStamp(c.name, c.id, id, now)
		return st, true, true, err
	}
	if d.hasData {
		return stamp{}, false, false, fmt.Errorf("%w: %s holds data but no identity stamp, so whose data it is cannot be known (node id %s is claimed by incarnation %q). Start a new node with a new node id on a fresh directory (%s)",
			ErrIdentity, d.dir, id, c.claimed, replaceHint)
	}
	// Empty directory.
	switch c.member {
	case placement.MemberDead:
		return stamp{}, false, false, fmt.Errorf("%w: node %s was declared dead in cluster %s (id %s) and %s is empty. To bring it back on this directory, run `veltrix node replace %s` first: the node then backfills its partitions from the other replicas (%s)",
			ErrIdentity, id, c.name, c.id, d.dir, id, replaceHint)
	}
	// A replacing node (`veltrix node replace`) comes back on an empty
	// directory and backfills its partitions in place; it is not read
	// until each backfill is complete. It claims the node id as a new
	// directory does.
	if c.held > 0 && c.member != placement.MemberReplacing {
		return stamp{}, false, false, fmt.Errorf("%w: data directory %s is empty but node id %s holds %d partitions in cluster %s (id %s): serving them from an empty directory would answer reads of acknowledged writes with not-found. To bring %s back on an empty directory, run `veltrix node replace %s` and start it again: it then backfills its partitions from the other replicas; to bring back its data, restore its data directory (%s)",
			ErrIdentity, d.dir, id, c.held, c.name, c.id, id, id, replaceHint)
	}
	if c.live != nil {
		return stamp{}, false, false, fmt.Errorf("%w: data directory %s is empty but node id %s is registered by a running process at %s (incarnation %q, started %s). Pick another node id; if that process is gone, its registration expires with its lease",
			ErrIdentity, d.dir, id, c.live.Address, c.live.Incarnation, c.live.StartTime.Format(time.RFC3339))
	}
	st, err = newStamp(c.name, c.id, id, now)
	return st, true, false, err
}

// checkIdentityOffline decides, without etcd, whether node id may restart
// on the directory d: d must be stamped for id and cluster (in its file and
// in Pebble, alike), and the persisted topology snap must not show another
// incarnation registered as id. What only etcd knows (the cluster id, the
// node id's claim, its current registration) is checked when etcd answers
// again (Server.rejoin).
func checkIdentityOffline(id, cluster string, d dirState, snap *topology.Snapshot) (stamp, error) {
	// Start only uses a persisted topology for a stamped directory;
	// checked again here because serving an empty directory is the one
	// thing that must never happen.
	known := d.file
	if known == nil {
		known = d.pebble
	}
	if known == nil {
		return stamp{}, fmt.Errorf("%w: %s is not stamped, and a new node cannot start while etcd is unreachable", ErrIdentity, d.dir)
	}
	c := clusterState{name: cluster, id: known.ClusterID}
	if snap.Placement != nil {
		c.member = snap.Placement.Members[id].State
	}
	st, create, _, err := checkIdentity(id, d, c, time.Now())
	switch {
	case err != nil:
		return stamp{}, err
	case create:
		return stamp{}, fmt.Errorf("%w: %s would be stamped anew, which needs etcd", ErrIdentity, d.dir)
	case st.Cluster != cluster:
		return stamp{}, fmt.Errorf("%w: %s belongs to cluster %s (id %s), not to cluster %s: its data must not be served here (%s)",
			ErrIdentity, d.dir, st.Cluster, st.ClusterID, cluster, replaceHint)
	}
	if n, ok := snap.Nodes[id]; ok && n.Incarnation != "" && n.Incarnation != st.Incarnation {
		return stamp{}, fmt.Errorf("%w: the persisted topology shows node %s registered at %s by another data directory (incarnation %s; %s has incarnation %s). Start the node on its current directory, or start a new node with a new node id on a fresh directory (%s)",
			ErrIdentity, id, n.Address, n.Incarnation, d.dir, st.Incarnation, replaceHint)
	}
	return st, nil
}
