package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/veltrixdb/veltrix/pkg/placement"
)

// ErrNoSnapshotFile is returned by ReadSnapshotFile when no snapshot was
// persisted yet; use errors.Is.
var ErrNoSnapshotFile = errors.New("topology: no persisted snapshot")

// snapshotFileVersion is the format of WriteSnapshotFile's output.
const snapshotFileVersion = 1

type snapshotFile struct {
	Version   int             `json:"version"`
	Cluster   string          `json:"cluster"`
	Revision  int64           `json:"revision"`
	Config    *ClusterConfig  `json:"config,omitempty"`
	Nodes     []Node          `json:"nodes"`
	Placement json.RawMessage `json:"placement,omitempty"`
	Tables    []fileTable     `json:"tables"`
}

// fileTable carries a table's id, which Table leaves out of its JSON
// (in etcd the id is the key's create revision).
type fileTable struct {
	Table
	ID uint64 `json:"id"`
}

// WriteSnapshotFile persists snap of cluster to path atomically (write to a
// temporary file, fsync, rename), so a router can start from it while etcd
// is unreachable.
func WriteSnapshotFile(path, cluster string, snap *Snapshot) error {
	f := snapshotFile{Version: snapshotFileVersion, Cluster: cluster, Revision: snap.Revision, Config: snap.Config}
	for _, n := range snap.Nodes {
		f.Nodes = append(f.Nodes, n)
	}
	sort.Slice(f.Nodes, func(i, j int) bool { return f.Nodes[i].ID < f.Nodes[j].ID })
	if snap.Placement != nil {
		b, err := snap.Placement.Marshal()
		if err != nil {
			return fmt.Errorf("topology: persist snapshot: %w", err)
		}
		f.Placement = b
	}
	for _, t := range snap.Tables {
		f.Tables = append(f.Tables, fileTable{Table: t, ID: t.ID})
	}
	sort.Slice(f.Tables, func(i, j int) bool { return f.Tables[i].Name < f.Tables[j].Name })
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("topology: persist snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("topology: persist snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("topology: persist snapshot to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("topology: persist snapshot to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("topology: persist snapshot to %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("topology: persist snapshot: %w", err)
	}
	return nil
}

// ReadSnapshotFile loads a snapshot WriteSnapshotFile persisted for
// cluster. It returns an error wrapping ErrNoSnapshotFile when path does
// not exist.
func ReadSnapshotFile(path, cluster string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoSnapshotFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("topology: read snapshot: %w", err)
	}
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("topology: decode snapshot %s: %w", path, err)
	}
	if f.Version != snapshotFileVersion {
		return nil, fmt.Errorf("topology: snapshot %s has format version %d, want %d", path, f.Version, snapshotFileVersion)
	}
	if f.Cluster != cluster {
		return nil, fmt.Errorf("topology: snapshot %s is of cluster %q, not %q", path, f.Cluster, cluster)
	}
	snap := &Snapshot{
		Revision: f.Revision, Config: f.Config,
		Nodes: map[string]Node{}, Tables: map[string]Table{}, TablesByID: map[uint64]Table{},
		Routers: map[string]Router{}, Progress: map[MoveKey]MoveProgress{},
	}
	for _, n := range f.Nodes {
		snap.Nodes[n.ID] = n
	}
	if len(f.Placement) > 0 {
		p, err := placement.Unmarshal(f.Placement)
		if err != nil {
			return nil, fmt.Errorf("topology: snapshot %s: %w", path, err)
		}
		snap.Placement = &p
	}
	for _, ft := range f.Tables {
		t := ft.Table
		t.ID = ft.ID
		snap.Tables[t.Name] = t
		snap.TablesByID[t.ID] = t
	}
	return snap, nil
}
