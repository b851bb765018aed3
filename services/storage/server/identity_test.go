package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

func TestCheckIdentity(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	mine := &stamp{Format: stampFormat, Cluster: "prod", ClusterID: "C", NodeID: "s2", Incarnation: "inc-1", CreateTime: now.Add(-time.Hour)}
	with := func(f func(*stamp)) *stamp {
		s := *mine
		f(&s)
		return &s
	}
	cluster := clusterState{name: "prod", id: "C"}
	holding := clusterState{name: "prod", id: "C", held: 341}
	as := func(c clusterState, m placement.MemberState) clusterState {
		c.member = m
		return c
	}
	live := func(inc string) clusterState {
		c := holding
		c.live = &topology.Node{ID: "s2", Address: "10.0.0.2:7500", Incarnation: inc}
		return c
	}
	for _, tc := range []struct {
		name    string
		id      string
		dir     dirState
		cluster clusterState
		// want is "" for a new stamp, "ok" for the directory's own stamp,
		// "adopt" for a legacy directory, otherwise a substring of the error.
		want string
	}{
		{"fresh dir, new id", "s4", dirState{}, cluster, ""},
		{"fresh dir, new id, legacy NODE_ID without data", "s4", dirState{legacyID: "s4"}, cluster, ""},
		{"stamped dir, same cluster and id", "s2", dirState{file: mine, pebble: mine, hasData: true}, holding, "ok"},
		{"stamped dir, restarted before its lease expired", "s2", dirState{file: mine, pebble: mine}, live("inc-1"), "ok"},
		{"stamped dir, registration from before incarnations", "s2", dirState{file: mine, pebble: mine}, live(""), "ok"},
		{"empty dir, id holds partitions", "s2", dirState{}, holding,
			"data directory /d is empty but node id s2 holds 341 partitions in cluster prod (id C)"},
		{"empty dir with legacy NODE_ID, id holds partitions", "s2", dirState{legacyID: "s2"}, holding, "is empty but node id s2 holds 341"},
		{"empty dir, id registered by a running process", "s4", dirState{}, clusterState{name: "prod", id: "C", live: &topology.Node{ID: "s4", Address: "x:1"}},
			"registered by a running process at x:1"},
		{"dir of another cluster", "s2", dirState{file: with(func(s *stamp) { s.ClusterID = "D"; s.Cluster = "prod-old" }), pebble: with(func(s *stamp) { s.ClusterID = "D"; s.Cluster = "prod-old" })}, holding,
			"belongs to cluster prod-old (id D), not to cluster prod (id C)"},
		{"dir of another node", "s3", dirState{file: mine, pebble: mine, hasData: true}, holding, `holds the data of node "s2"`},
		{"pebble wiped, stamp file kept", "s2", dirState{file: mine}, holding, "has no stamp: its data was wiped or replaced"},
		{"stamp file lost, pebble kept", "s2", dirState{pebble: mine, hasData: true}, holding, "IDENTITY is missing"},
		{"stamp file and pebble of different directories", "s2", dirState{file: mine, pebble: with(func(s *stamp) { s.Incarnation = "inc-2" })}, holding,
			"come from different directories"},
		{"another incarnation is running", "s2", dirState{file: mine, pebble: mine}, live("inc-9"), "registered at 10.0.0.2:7500 by another data directory (incarnation inc-9"},
		{"stamped dir replaced by a newer directory", "s2", dirState{file: mine, pebble: mine, hasData: true}, func() clusterState { c := holding; c.claimed = "inc-7"; return c }(),
			"another data directory (incarnation inc-7) has become node s2 since: this one is stale"},
		{"stamped dir, claimed by itself", "s2", dirState{file: mine, pebble: mine}, func() clusterState { c := holding; c.claimed = "inc-1"; return c }(), "ok"},
		{"legacy directory with data, id claimed by a stamped one", "s2", dirState{legacyID: "s2", hasData: true}, func() clusterState { c := holding; c.claimed = "inc-7"; return c }(),
			"holds data but no identity stamp"},
		{"unstamped data without NODE_ID", "s4", dirState{hasData: true}, cluster, "holds data but no identity stamp"},
		{"legacy directory with data", "s2", dirState{legacyID: "s2", hasData: true}, holding, "adopt"},
		{"empty dir, id holds partitions, the message names the replace command", "s2", dirState{}, holding, "run `veltrix node replace s2` and start it again"},
		// Membership (elastic membership, issue 14).
		{"empty dir, id replacing", "s2", dirState{}, as(holding, placement.MemberReplacing), ""},
		{"empty dir, id replacing, claimed by its lost directory", "s2", dirState{}, func() clusterState { c := as(holding, placement.MemberReplacing); c.claimed = "inc-1"; return c }(), ""},
		{"empty dir, id replacing, registered by a running process", "s2", dirState{}, as(live("inc-1"), placement.MemberReplacing), "registered by a running process at 10.0.0.2:7500"},
		{"stamped dir, id replacing", "s2", dirState{file: mine, pebble: mine, hasData: true}, as(holding, placement.MemberReplacing), "ok"},
		{"stamped dir, id active", "s2", dirState{file: mine, pebble: mine, hasData: true}, as(holding, placement.MemberActive), "ok"},
		{"stamped dir, id leaving", "s2", dirState{file: mine, pebble: mine, hasData: true}, as(holding, placement.MemberLeaving), "ok"},
		{"stamped dir, id removed", "s2", dirState{file: mine, pebble: mine, hasData: true}, as(cluster, placement.MemberRemoved),
			"node s2 was removed from cluster prod (id C) and /d holds its old data"},
		{"stamped empty dir, id removed", "s2", dirState{file: mine, pebble: mine}, as(cluster, placement.MemberRemoved), "may join again only as a new node on an empty data directory"},
		{"stamped dir, id dead", "s2", dirState{file: mine, pebble: mine, hasData: true}, as(holding, placement.MemberDead),
			"node s2 was declared dead in cluster prod (id C): its partitions are being re-created on other nodes and the data in /d is out of date. To bring it back, run `veltrix node replace s2`"},
		{"legacy directory with data, id dead", "s2", dirState{legacyID: "s2", hasData: true}, as(holding, placement.MemberDead), "was declared dead"},
		{"legacy directory with data, id removed", "s2", dirState{legacyID: "s2", hasData: true}, as(cluster, placement.MemberRemoved), "was removed from cluster prod"},
		{"empty dir, id removed", "s2", dirState{}, as(cluster, placement.MemberRemoved), ""},
		{"empty dir, id dead", "s2", dirState{}, as(holding, placement.MemberDead),
			"node s2 was declared dead in cluster prod (id C) and /d is empty. To bring it back on this directory, run `veltrix node replace s2` first"},
		{"empty dir, id dead, holding nothing any more", "s2", dirState{}, as(cluster, placement.MemberDead), "run `veltrix node replace s2` first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dir.dir = "/d"
			st, create, adopted, err := checkIdentity(tc.id, tc.dir, tc.cluster, now)
			switch tc.want {
			case "", "adopt":
				if err != nil || !create || adopted != (tc.want == "adopt") {
					t.Fatalf("got create=%v adopted=%v err=%v, want a new stamp", create, adopted, err)
				}
				if st.NodeID != tc.id || st.ClusterID != "C" || st.Cluster != "prod" || len(st.Incarnation) != 32 || !st.CreateTime.Equal(now) {
					t.Fatalf("new stamp = %+v", st)
				}
				if err := st.validate(); err != nil {
					t.Fatal(err)
				}
			case "ok":
				if err != nil || create || !st.same(*mine) {
					t.Fatalf("got %+v create=%v err=%v, want the directory's stamp", st, create, err)
				}
			default:
				if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got err=%v (create=%v), want ErrIdentity containing %q", err, create, tc.want)
				}
				if !strings.Contains(err.Error(), "Replacing a node") && !strings.Contains(err.Error(), "Pick another node id") {
					t.Fatalf("error does not tell the operator what to do: %v", err)
				}
			}
		})
	}
	// Two new stamps never share an incarnation.
	a, _, _, _ := checkIdentity("s4", dirState{}, cluster, now)
	b, _, _, _ := checkIdentity("s4", dirState{}, cluster, now)
	if a.Incarnation == b.Incarnation {
		t.Fatalf("incarnation %s chosen twice", a.Incarnation)
	}
}

func TestStampFile(t *testing.T) {
	dir := t.TempDir()
	if st, err := readStampFile(dir); st != nil || err != nil {
		t.Fatalf("fresh dir: %+v, %v", st, err)
	}
	want, err := newStamp("prod", "C", "s1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeStampFile(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readStampFile(dir)
	if err != nil || got == nil || !got.same(want) {
		t.Fatalf("read back %+v, %v; wrote %+v", got, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, stampFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	good, err := os.ReadFile(filepath.Join(dir, stampFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"garbage", []byte("\x00\x17not json")},
		{"truncated", good[:len(good)/2]},
		{"first byte flipped", flip(good, 0)},
		{"no incarnation", []byte(`{"format":1,"cluster":"prod","cluster_id":"C","node_id":"s1","create_time":"2026-12-07T03:00:00Z"}`)},
		{"future format", []byte(`{"format":2,"cluster":"prod","cluster_id":"C","node_id":"s1","incarnation":"i","create_time":"2026-12-07T03:00:00Z"}`)},
		{"unknown field", []byte(`{"format":1,"cluster":"prod","cluster_id":"C","node_id":"s1","incarnation":"i","create_time":"2026-12-07T03:00:00Z","extra":1}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, stampFile)
			if err := os.WriteFile(path, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := readStampFile(dir)
			if st != nil || !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "is corrupt") ||
				!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "never re-created") {
				t.Fatalf("got %+v, %v; want a corrupt-stamp error naming %s", st, err, path)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x20
	return out
}

func TestResolveNodeID(t *testing.T) {
	s1 := &stamp{NodeID: "s1"}
	for _, tc := range []struct {
		name, configured string
		file             *stamp
		legacy           string
		want             string // "" for a random id, "!" prefix for an error substring
	}{
		{"configured, fresh dir", "s1", nil, "", "s1"},
		{"from the stamp", "", s1, "", "s1"},
		{"configured and stamped alike", "s1", s1, "", "s1"},
		{"configured differs from the stamp", "s2", s1, "", `!holds the data of node "s1"`},
		{"configured differs from NODE_ID", "s2", nil, "s1", `!holds the data of node "s1"`},
		{"from NODE_ID", "", nil, "s1", "s1"},
		{"random", "", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveNodeID("/d", tc.configured, tc.file, tc.legacy)
			switch {
			case strings.HasPrefix(tc.want, "!"):
				if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.want[1:]) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.want[1:])
				}
			case tc.want == "":
				if err != nil || !strings.HasPrefix(got, "n-") {
					t.Fatalf("got %q, %v; want a random id", got, err)
				}
			default:
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
			}
		})
	}
}

func TestCheckIdentityOffline(t *testing.T) {
	mine := &stamp{Format: stampFormat, Cluster: "prod", ClusterID: "C", NodeID: "s2", Incarnation: "inc-1"}
	other := *mine
	other.Incarnation = "inc-2"
	snap := func(inc string) *topology.Snapshot {
		return &topology.Snapshot{Nodes: map[string]topology.Node{"s2": {ID: "s2", Address: "x:1", Incarnation: inc}}}
	}
	for _, tc := range []struct {
		name string
		id   string
		dir  dirState
		snap *topology.Snapshot
		want string // "" for ok, else a substring of the error
	}{
		{"restart", "s2", dirState{file: mine, pebble: mine, hasData: true}, snap("inc-1"), ""},
		{"restart, not in the persisted registrations", "s2", dirState{file: mine, pebble: mine}, &topology.Snapshot{}, ""},
		{"fresh dir", "s2", dirState{}, snap("inc-1"), "is not stamped"},
		{"pebble wiped", "s2", dirState{file: mine}, snap("inc-1"), "its data was wiped or replaced"},
		{"stamp file lost", "s2", dirState{pebble: mine, hasData: true}, snap("inc-1"), "IDENTITY is missing"},
		{"stamps of different directories", "s2", dirState{file: mine, pebble: &other}, snap("inc-1"), "come from different directories"},
		{"dir of another node", "s3", dirState{file: mine, pebble: mine}, snap("inc-1"), `holds the data of node "s2"`},
		{"another incarnation registered", "s2", dirState{file: mine, pebble: mine}, snap("inc-9"), "by another data directory (incarnation inc-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dir.dir = "/d"
			st, err := checkIdentityOffline(tc.id, "prod", tc.dir, tc.snap)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && !st.same(*mine):
				t.Fatalf("stamp %v, want %v", st, mine)
			case tc.want != "" && (!errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrIdentity containing %q", err, tc.want)
			}
		})
	}
	dead := snap("inc-1")
	dead.Placement = &placement.Document{Members: map[string]placement.Member{"s2": {State: placement.MemberDead}}}
	if _, err := checkIdentityOffline("s2", "prod", dirState{dir: "/d", file: mine, pebble: mine, hasData: true}, dead); !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "declared dead") {
		t.Fatalf("dead node restarted without etcd: %v", err)
	}
	if _, err := checkIdentityOffline("s2", "staging", dirState{dir: "/d", file: mine, pebble: mine}, snap("inc-1")); !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "not to cluster staging") {
		t.Fatalf("directory of another cluster: %v", err)
	}
}
