package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestNodeUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"node"}, []string{"decommission, list, remove, replace"}},
		{[]string{"node", "drain", "n1"}, []string{`unknown subcommand "drain"`}},
		{[]string{"node", "decommission"}, []string{"wrong number of arguments"}},
		{[]string{"node", "decommission", "n1", "n2"}, []string{"wrong number of arguments"}},
		{[]string{"node", "decommission", " "}, []string{"NODE_ID is empty"}},
		{[]string{"node", "replace"}, []string{"wrong number of arguments"}},
		{[]string{"node", "list", "n1"}, []string{"wrong number of arguments"}},
		// remove without --dead explains decommission vs remove --dead, and
		// never reaches a router (none listens on port 1).
		{[]string{"node", "remove", "n3", "--endpoints", "127.0.0.1:1"}, []string{"remove needs --dead", "veltrix node decommission n3", "gone for good"}},
		{[]string{"node", "remove", "n3", "--dead", "--output", "xml"}, []string{`--output "xml"`}},
		{[]string{"cluster"}, []string{"want one of: rebalance"}},
		{[]string{"cluster", "rebalance"}, []string{"want one of: status"}},
		{[]string{"cluster", "rebalance", "status", "extra"}, []string{"wrong number of arguments"}},
		{[]string{"cluster", "rebalance", "status", "--watch", "--interval", "0s"}, []string{"--interval 0s: must be positive"}},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != exitUsage {
			t.Errorf("veltrix %s: exit %d (stderr %q); want %d", strings.Join(tc.args, " "), code, stderr, exitUsage)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("veltrix %s: stderr %q lacks %q", strings.Join(tc.args, " "), stderr, w)
			}
		}
	}
}

func TestNodeHelp(t *testing.T) {
	for _, args := range [][]string{{"node", "decommission", "-h"}, {"node", "remove", "-h"}, {"cluster", "rebalance", "status", "-h"}} {
		if code, _, stderr := runCLI(t, nil, args...); code != exitOK {
			t.Errorf("veltrix %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
	}
	_, out, _ := runCLI(t, nil, "help")
	for _, c := range []string{"node", "cluster"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("help does not list %q", c)
		}
	}
	if !strings.Contains(out, "130 interrupted") {
		t.Errorf("help does not document exit code 130:\n%s", out)
	}
}

func TestNodeRows(t *testing.T) {
	rows := nodeRows([]*kvv1.NodeStatus{
		{Id: "n1", Address: "10.0.0.1:7500", Zone: "a", State: kvv1.NodeState_NODE_STATE_UP, Membership: kvv1.Membership_MEMBERSHIP_LEAVING,
			Replicas: 341, Pending: 0, UsedBytes: 3 << 30, PlacementEpoch: 42},
		{Id: "n4", State: kvv1.NodeState_NODE_STATE_JOINING, Membership: kvv1.Membership_MEMBERSHIP_ACTIVE, Pending: 12, UsedBytes: 1536},
		{Id: "old", State: kvv1.NodeState_NODE_STATE_DOWN}, // a router that reports no membership
	})
	want := [][]string{
		{"n1", "10.0.0.1:7500", "a", "UP", "LEAVING", "341", "-", "3.0 GiB", "42"},
		{"n4", "-", "-", "JOINING", "ACTIVE", "0", "12", "1.5 KiB", "-"},
		{"old", "-", "-", "DOWN", "-", "0", "-", "-", "-"},
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d = %q, want %q", i, rows[i], want[i])
		}
		if len(rows[i]) != len(nodeHeader) {
			t.Errorf("row %d has %d columns, header %d", i, len(rows[i]), len(nodeHeader))
		}
	}
}

func TestNodesJSON(t *testing.T) {
	var out bytes.Buffer
	if err := nodesJSON(&out, []*kvv1.NodeStatus{{Id: "n1", Membership: kvv1.Membership_MEMBERSHIP_DEAD, UsedBytes: 7}}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(got.Nodes) != 1 || got.Nodes[0]["id"] != "n1" || got.Nodes[0]["membership"] != "MEMBERSHIP_DEAD" || got.Nodes[0]["usedBytes"] != "7" {
		t.Fatalf("nodes JSON = %s", out.String())
	}
	out.Reset()
	if err := nodesJSON(&out, nil); err != nil || !strings.Contains(out.String(), `"nodes": []`) {
		t.Fatalf("no nodes: %q, %v; want an empty list", out.String(), err)
	}
}

func rebalancing() *kvv1.RebalanceStatusResponse {
	return &kvv1.RebalanceStatusResponse{
		PlacementEpoch: 42,
		Moves: []*kvv1.PartitionMove{
			{Partition: 9, Add: "n4", Remove: "n1", Stage: "cleanup"},
			{Partition: 7, Add: "n4", Remove: "n1", Stage: "streaming", Records: 1200, Bytes: 3 << 20},
			{Partition: 3, Add: "n4", Stage: "pending"},
			{Partition: 5, Add: "n2", Remove: "n2", Stage: "streaming", Error: "n3: unavailable"},
			{Partition: 1, Add: "n5", Remove: "n1", Stage: "read_new"},
		},
		Moved: 30, Remaining: 90, UnderReplicated: 2,
		BytesStreamed: 3 << 30, RateBytesPerSecond: 48 << 20, Eta: durationpb.New(200 * time.Second),
		StartTime: timestamppb.New(time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)),
	}
}

func TestRebalanceText(t *testing.T) {
	r := rebalancing()
	if got, want := inFlight(r), "1 pending, 2 streaming, 1 read_new, 1 cleanup"; got != want {
		t.Errorf("inFlight = %q, want %q", got, want)
	}
	if got, want := rebalanceLine(r), "rebalancing: 30/120 moves (25%), in flight: 1 pending, 2 streaming, 1 read_new, 1 cleanup; 3.0 GiB streamed at 48.0 MiB/s, ETA 3m20s; 2 partitions UNDER-REPLICATED"; got != want {
		t.Errorf("rebalanceLine =\n%q, want\n%q", got, want)
	}
	balanced := &kvv1.RebalanceStatusResponse{PlacementEpoch: 50, Moved: 120, Balanced: true}
	if got, want := rebalanceLine(balanced), "balanced at placement epoch 50 (120 moves done)"; got != want {
		t.Errorf("rebalanceLine(balanced) = %q, want %q", got, want)
	}
	cleaning := &kvv1.RebalanceStatusResponse{PlacementEpoch: 51, Moved: 120, Balanced: true, Moves: []*kvv1.PartitionMove{{Partition: 4, Remove: "n1", Stage: "cleanup"}}}
	if got, want := rebalanceLine(cleaning), "balanced at placement epoch 51 (120 moves done); 1 cleanups still dropping old copies"; got != want {
		t.Errorf("rebalanceLine(cleaning) = %q, want %q", got, want)
	}
	for _, tc := range []struct{ got, want string }{
		{decommissionText("n1", &kvv1.NodeStatus{Membership: kvv1.Membership_MEMBERSHIP_REMOVED}), "already REMOVED"},
		{decommissionText("n1", &kvv1.NodeStatus{Membership: kvv1.Membership_MEMBERSHIP_DEAD}), "removed as dead (DEAD)"},
		{removeText("n1", &kvv1.NodeStatus{Membership: kvv1.Membership_MEMBERSHIP_REMOVED}), "already REMOVED (nothing changed)"},
	} {
		if !strings.Contains(tc.got, tc.want) {
			t.Errorf("%q lacks %q", tc.got, tc.want)
		}
	}
	if got := inFlight(balanced); got != "none" {
		t.Errorf("inFlight(balanced) = %q", got)
	}
	if got := rebalancePercent(&kvv1.RebalanceStatusResponse{}); got != 100 {
		t.Errorf("nothing to move is %d%%, want 100", got)
	}
	if got := rateText(&kvv1.RebalanceStatusResponse{Remaining: 3}); got != "0 B streamed, ETA unknown" {
		t.Errorf("rateText without a rate = %q", got)
	}

	var out bytes.Buffer
	if err := rebalanceReport(&out, r, r.StartTime.AsTime().Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"rebalancing at placement epoch 42",
		"30 moved, 90 remaining (25%)",
		"in flight:         1 pending, 2 streaming, 1 read_new, 1 cleanup",
		"3.0 GiB streamed at 48.0 MiB/s, ETA 3m20s",
		"2026-12-07T05:00:00Z (4m0s ago)",
		"under-replicated:  2 partitions (fewer than RF",
		"n1 → n4", "+n4", "n2 backfills in place", "n1 drops its copy", "n3: unavailable", "3.0 MiB",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// Moves are listed in stage order: pending first, cleanup last.
	if strings.Index(text, "+n4") > strings.Index(text, "n1 → n4") || strings.Index(text, "n1 drops its copy") < strings.Index(text, "n1 → n5") {
		t.Errorf("moves not in stage order:\n%s", text)
	}

	many := &kvv1.RebalanceStatusResponse{Remaining: 30}
	for p := range 25 {
		many.Moves = append(many.Moves, &kvv1.PartitionMove{Partition: uint32(p), Add: "n4", Stage: "pending"})
	}
	out.Reset()
	if err := rebalanceReport(&out, many, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "… 5 more moves") {
		t.Errorf("25 moves: no '5 more' line:\n%s", out.String())
	}
}

// fakeRebalance answers RebalanceStatus from a script; the last answer
// repeats.
type fakeRebalance struct {
	mu    sync.Mutex
	steps []*kvv1.RebalanceStatusResponse
	calls int
}

func (f *fakeRebalance) fetch(context.Context) (*kvv1.RebalanceStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.steps[min(f.calls, len(f.steps)-1)]
	f.calls++
	return r, nil
}

func script() *fakeRebalance {
	a := rebalancing()
	b := rebalancing()
	b.Moved, b.Remaining = 100, 20
	return &fakeRebalance{steps: []*kvv1.RebalanceStatusResponse{a, b, {PlacementEpoch: 60, Moved: 120, Balanced: true}}}
}

func TestWatchRebalanceEndsWhenBalanced(t *testing.T) {
	t.Run("lines", func(t *testing.T) {
		var out bytes.Buffer
		f := script()
		if err := watchRebalance(context.Background(), &out, f.fetch, time.Millisecond, watchLines); err != nil {
			t.Fatalf("balanced watch: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], "30/120") || !strings.Contains(lines[1], "100/120") || !strings.Contains(lines[2], "balanced at placement epoch 60") {
			t.Errorf("lines:\n%s", out.String())
		}
	})
	t.Run("json", func(t *testing.T) {
		var out bytes.Buffer
		f := script()
		if err := watchRebalance(context.Background(), &out, f.fetch, time.Millisecond, watchJSON); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("%d lines, want one per refresh (3):\n%s", len(lines), out.String())
		}
		for i, l := range lines {
			var r kvv1.RebalanceStatusResponse
			if err := protojson.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("line %d is not one RebalanceStatusResponse: %v: %s", i, err, l)
			}
			if r.Balanced != (i == 2) {
				t.Errorf("line %d balanced=%v", i, r.Balanced)
			}
		}
	})
	t.Run("bar", func(t *testing.T) {
		var out bytes.Buffer
		f := script()
		if err := watchRebalance(context.Background(), &out, f.fetch, 500*time.Millisecond, watchBar, mpb.WithAutoRefresh(), mpb.WithWidth(200)); err != nil {
			t.Fatal(err)
		}
		text := ansi.ReplaceAllString(out.String(), "")
		for _, want := range []string{"rebalance 30/120 ", " 25%  5 in flight  48.0 MiB/s  ETA 3m20s  2 UNDER-REPLICATED",
			"rebalance 120/120 ", "100%  0 in flight", "balanced at placement epoch 60"} {
			if !strings.Contains(text, want) {
				t.Errorf("bar output lacks %q:\n%s", want, text)
			}
		}
	})
}

// TestWatchRebalanceLogQuiet checks that a log gets a line when progress
// changes, not every refresh because the average rate moved.
func TestWatchRebalanceLogQuiet(t *testing.T) {
	var steps []*kvv1.RebalanceStatusResponse
	for i := range 5 {
		r := rebalancing()
		r.RateBytesPerSecond = float64(1000 - i) // the rate falls while nothing moves
		steps = append(steps, r)
	}
	done := rebalancing()
	done.Moved, done.Remaining = 31, 89
	steps = append(steps, done, &kvv1.RebalanceStatusResponse{Moved: 120, Balanced: true})
	var out bytes.Buffer
	f := &fakeRebalance{steps: steps}
	if err := watchRebalance(context.Background(), &out, f.fetch, time.Millisecond, watchLines); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 3 {
		t.Errorf("%d lines for 3 distinct states:\n%s", len(lines), out.String())
	}
}

func TestWatchRebalanceInterrupted(t *testing.T) {
	for _, mode := range []watchMode{watchLines, watchJSON, watchBar} {
		var out bytes.Buffer
		f := &fakeRebalance{steps: []*kvv1.RebalanceStatusResponse{rebalancing()}}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := watchRebalance(ctx, &out, f.fetch, 5*time.Millisecond, mode)
		cancel()
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitInterrupted {
			t.Errorf("mode %d: interrupted watch returned %v; want exit %d", mode, err, exitInterrupted)
		}
		if mode != watchJSON && !strings.Contains(out.String(), "the rebalance goes on") {
			t.Errorf("mode %d: output does not say the rebalance goes on:\n%s", mode, out.String())
		}
		if f.calls < 2 {
			t.Errorf("mode %d: %d refreshes in 50ms at 5ms", mode, f.calls)
		}
	}
}

func TestWatchRebalanceError(t *testing.T) {
	boom := errors.New("rebalance status: unavailable")
	err := watchRebalance(context.Background(), &bytes.Buffer{}, func(context.Context) (*kvv1.RebalanceStatusResponse, error) { return nil, boom }, time.Millisecond, watchLines)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

// fakeAdmin serves the membership RPCs on loopback with canned answers.
type fakeAdmin struct {
	kvv1.UnimplementedAdminServiceServer
	mu         sync.Mutex
	reqs       []string
	rebalances int
}

// RebalanceStatus answers rebalancing, then balanced.
func (f *fakeAdmin) RebalanceStatus(context.Context, *kvv1.RebalanceStatusRequest) (*kvv1.RebalanceStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rebalances++
	if f.rebalances%2 == 0 {
		return &kvv1.RebalanceStatusResponse{PlacementEpoch: 60, Moved: 120, Balanced: true}, nil
	}
	return rebalancing(), nil
}

func (f *fakeAdmin) record(s string) {
	f.mu.Lock()
	f.reqs = append(f.reqs, s)
	f.mu.Unlock()
}

func (f *fakeAdmin) refuse(id string) error {
	switch id {
	case "ghost":
		return status.Error(codes.NotFound, `node "ghost" is not a member`)
	case "n1":
		return status.Error(codes.FailedPrecondition, "3 active nodes would remain 2, below RF 3")
	}
	return nil
}

func (f *fakeAdmin) DecommissionNode(_ context.Context, r *kvv1.DecommissionNodeRequest) (*kvv1.DecommissionNodeResponse, error) {
	f.record("decommission " + r.NodeId)
	if err := f.refuse(r.NodeId); err != nil {
		return nil, err
	}
	return &kvv1.DecommissionNodeResponse{Node: &kvv1.NodeStatus{Id: r.NodeId, Membership: kvv1.Membership_MEMBERSHIP_LEAVING, Replicas: 341}}, nil
}

func (f *fakeAdmin) RemoveNode(_ context.Context, r *kvv1.RemoveNodeRequest) (*kvv1.RemoveNodeResponse, error) {
	f.record("remove " + r.NodeId)
	if !r.Dead {
		return nil, status.Error(codes.FailedPrecondition, "dead must be set")
	}
	if err := f.refuse(r.NodeId); err != nil {
		return nil, err
	}
	return &kvv1.RemoveNodeResponse{Node: &kvv1.NodeStatus{Id: r.NodeId, Membership: kvv1.Membership_MEMBERSHIP_DEAD, Replicas: 100}}, nil
}

func (f *fakeAdmin) ReplaceNode(_ context.Context, r *kvv1.ReplaceNodeRequest) (*kvv1.ReplaceNodeResponse, error) {
	f.record("replace " + r.NodeId)
	if err := f.refuse(r.NodeId); err != nil {
		return nil, err
	}
	return &kvv1.ReplaceNodeResponse{Node: &kvv1.NodeStatus{Id: r.NodeId, Membership: kvv1.Membership_MEMBERSHIP_REPLACING}, Partitions: 77}, nil
}

func (f *fakeAdmin) ClusterStatus(context.Context, *kvv1.ClusterStatusRequest) (*kvv1.ClusterStatusResponse, error) {
	return &kvv1.ClusterStatusResponse{Cluster: "c", Partitions: 1024, ReplicationFactor: 3, PlacementEpoch: 42, RouterId: "r1",
		Nodes: []*kvv1.NodeStatus{
			{Id: "n1", State: kvv1.NodeState_NODE_STATE_UP, Membership: kvv1.Membership_MEMBERSHIP_LEAVING, Replicas: 300, Primaries: 100},
			{Id: "n4", State: kvv1.NodeState_NODE_STATE_UP, Membership: kvv1.Membership_MEMBERSHIP_ACTIVE, Pending: 12},
		},
		Rebalance: rebalancing()}, nil
}

func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAdmin{}
	srv := grpc.NewServer()
	kvv1.RegisterAdminServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

// TestMembershipCommands runs the commands against a fake router: what
// they print, and exit 1 with the router's message when it refuses.
func TestMembershipCommands(t *testing.T) {
	f, addr := startFakeAdmin(t)
	for _, tc := range []struct {
		args []string
		code int
		out  []string
		err  []string
	}{
		{[]string{"node", "decommission", "n3"}, exitOK, []string{"node n3: decommissioning (membership LEAVING)", "341 replicas", followHint, "REMOVED"}, nil},
		{[]string{"node", "decommission", "n1"}, exitFailure, nil, []string{"decommission n1: refused: 3 active nodes would remain 2, below RF 3 (nothing changed)"}},
		{[]string{"node", "decommission", "ghost"}, exitFailure, nil, []string{`no such node: node "ghost" is not a member`, "veltrix node list"}},
		{[]string{"node", "remove", "n3", "--dead"}, exitOK, []string{"node n3: removed as dead (membership DEAD)", "100 replicas", followHint}, nil},
		{[]string{"node", "remove", "--dead", "n1"}, exitFailure, nil, []string{"remove n1: refused"}},
		{[]string{"node", "replace", "n3"}, exitOK, []string{"node n3: replacing (membership REPLACING): 77 partitions", "empty data directory", followHint}, nil},
		{[]string{"node", "replace", "ghost"}, exitFailure, nil, []string{"replace ghost: no such node"}},
		{[]string{"node", "replace", "n3", "--output", "json"}, exitOK, []string{`"partitions": 77`, `"membership": "MEMBERSHIP_REPLACING"`}, nil},
		{[]string{"node", "list"}, exitOK, []string{"MEMBERSHIP", "PENDING", "LEAVING", "12"}, nil},
		{[]string{"status"}, exitOK, []string{"MEMBERSHIP", "LEAVING", "rebalancing: 30/120 moves", "UNDER-REPLICATED", followHint}, nil},
		{[]string{"cluster", "rebalance", "status"}, exitOK, []string{"rebalancing at placement epoch 42", "n1 → n4"}, nil},
		// The fake's second answer is balanced: --watch ends with exit 0.
		{[]string{"cluster", "rebalance", "status", "--watch", "--interval", "10ms", "--output", "json"}, exitOK, []string{`"balanced":true`}, nil},
	} {
		args := append(tc.args, "--endpoints", addr, "--timeout", "5s")
		code, stdout, stderr := runCLI(t, nil, args...)
		name := "veltrix " + strings.Join(tc.args, " ")
		if code != tc.code {
			t.Errorf("%s: exit %d (stdout %q, stderr %q); want %d", name, code, stdout, stderr, tc.code)
		}
		for _, w := range tc.out {
			// protojson varies its spacing on purpose: compare without it.
			if !strings.Contains(stdout, w) && !strings.Contains(squeeze(stdout), squeeze(w)) {
				t.Errorf("%s: stdout lacks %q:\n%s", name, w, stdout)
			}
		}
		for _, w := range tc.err {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", name, w, stderr)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := "decommission n3|decommission n1|decommission ghost|remove n3|remove n1|replace n3|replace ghost|replace n3"
	if got := strings.Join(f.reqs, "|"); got != want {
		t.Errorf("requests %s; want %s (remove without --dead must not reach the router)", got, want)
	}
}

// squeeze removes every space, tab and newline.
func squeeze(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
