package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanInterleavesPeersRoundByRound(t *testing.T) {
	runs := func(p, w string) bool { return !(p == "B" && w == "PUT") }
	got := plan([]string{"C", "PUT"}, []string{"A", "B", "C"}, runs, 2)
	var s []string
	for _, st := range got {
		s = append(s, fmt.Sprintf("%s/%s/%d", st.Workload, st.Peer, st.Round))
	}
	want := []string{
		"C/A/1", "C/B/1", "C/C/1", "C/A/2", "C/B/2", "C/C/2",
		"PUT/A/1", "PUT/C/1", "PUT/A/2", "PUT/C/2",
	}
	if !slices.Equal(s, want) {
		t.Errorf("plan\n got %v\nwant %v", s, want)
	}
	if n := len(plan([]string{"C"}, []string{"A"}, runs, 0)); n != 0 {
		t.Errorf("0 rounds: %d steps", n)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1, 1000, 11}, 10},
	} {
		in := slices.Clone(tc.in)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %g, want %g", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median reordered its input: %v", tc.in)
		}
	}
}

// roundResults are three rounds of one workload on one peer.
func roundResults() []Result {
	mk := func(round int, ops float64, p99, cpu time.Duration) Result {
		return Result{
			Peer: "etcd-1", Workload: "C", Consistency: "linearizable", Mode: "closed", Round: round,
			OpsPerSec: ops, KeysPerSec: ops, Ops: uint64(ops), Errors: uint64(round - 1),
			Latency:  Lat{P50: Micros(p99 / 4), P99: Micros(p99), P999: Micros(2 * p99), Max: Micros(3 * p99), Mean: Micros(p99 / 3)},
			CPUPerOp: Micros(cpu),
			ByOp:     map[string]Lat{"read": {P99: Micros(p99)}},
		}
	}
	return []Result{
		mk(1, 9000, 3*time.Millisecond, 100*time.Microsecond),
		mk(2, 11000, 1*time.Millisecond, 80*time.Microsecond),
		mk(3, 10000, 2*time.Millisecond, 90*time.Microsecond),
	}
}

func TestAggregate(t *testing.T) {
	r := Aggregate(roundResults())
	if r.Peer != "etcd-1" || r.Workload != "C" || r.Consistency != "linearizable" || r.Round != 0 || len(r.Rounds) != 3 {
		t.Fatalf("aggregate: %+v", r)
	}
	if r.OpsPerSec != 10000 || r.Latency.P99 != Micros(2*time.Millisecond) || r.CPUPerOp != Micros(90*time.Microsecond) {
		t.Errorf("medians: ops %g, P99 %v, CPU %v", r.OpsPerSec, time.Duration(r.Latency.P99), time.Duration(r.CPUPerOp))
	}
	if r.Ops != 30000 || r.Errors != 3 {
		t.Errorf("totals: ops %d, errors %d", r.Ops, r.Errors)
	}
	sp := r.Spread
	if sp.OpsPerSecMin != 9000 || sp.OpsPerSecMax != 11000 || sp.P99Min != Micros(time.Millisecond) || sp.P99Max != Micros(3*time.Millisecond) ||
		sp.CPUPerOpMin != Micros(80*time.Microsecond) || sp.CPUPerOpMax != Micros(100*time.Microsecond) {
		t.Errorf("spread: %+v", sp)
	}
	if got := r.ByOp["read"].P99; got != Micros(2*time.Millisecond) {
		t.Errorf("by_op read P99 %v", time.Duration(got))
	}
	for _, tc := range []struct{ got, want string }{
		{spreadPct(r.OpsPerSec, sp.OpsPerSecMin, sp.OpsPerSecMax), "±10%"},
		{spreadPct(r.CPUPerOp, sp.CPUPerOpMin, sp.CPUPerOpMax), "±11%"},
		{spreadPct(5.0, 5, 5), "±0%"},
		{spreadPct(0.0, 0, 0), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("spread %q, want %q", tc.got, tc.want)
		}
	}
	if got := Aggregate(nil); got.Peer != "" || got.Spread != nil {
		t.Errorf("aggregate of nothing: %+v", got)
	}
}

func TestJSONHasRoundsAndMedians(t *testing.T) {
	r := sampleReport()
	r.Settings.Rounds = 3
	r.Results = append(r.Results, Aggregate(roundResults()))
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Settings struct {
			Rounds int `json:"rounds"`
		} `json:"settings"`
		Results []struct {
			Peer        string  `json:"peer"`
			Workload    string  `json:"workload"`
			Consistency string  `json:"consistency"`
			OpsPerSec   float64 `json:"ops_per_s"`
			CPUPerOp    float64 `json:"cpu_per_op_us"`
			Latency     struct {
				P99 float64 `json:"p99_us"`
			} `json:"latency"`
			Spread *struct {
				OpsMin float64 `json:"ops_per_s_min"`
				OpsMax float64 `json:"ops_per_s_max"`
				P99Min float64 `json:"p99_us_min"`
				P99Max float64 `json:"p99_us_max"`
				CPUMin float64 `json:"cpu_per_op_us_min"`
				CPUMax float64 `json:"cpu_per_op_us_max"`
			} `json:"spread"`
			Rounds []struct {
				Round     int     `json:"round"`
				OpsPerSec float64 `json:"ops_per_s"`
				CPUPerOp  float64 `json:"cpu_per_op_us"`
			} `json:"rounds"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if back.Settings.Rounds != 3 {
		t.Errorf("settings.rounds %d", back.Settings.Rounds)
	}
	res := back.Results[len(back.Results)-1]
	if res.Peer != "etcd-1" || res.Consistency != "linearizable" || res.OpsPerSec != 10000 || res.CPUPerOp != 90 || res.Latency.P99 != 2000 {
		t.Errorf("median row: %+v", res)
	}
	if sp := res.Spread; sp == nil || sp.OpsMin != 9000 || sp.OpsMax != 11000 || sp.P99Min != 1000 || sp.P99Max != 3000 || sp.CPUMin != 80 || sp.CPUMax != 100 {
		t.Errorf("spread: %+v", res.Spread)
	}
	if len(res.Rounds) != 3 || res.Rounds[0].Round != 1 || res.Rounds[1].OpsPerSec != 11000 || res.Rounds[2].CPUPerOp != 90 {
		t.Errorf("rounds: %+v", res.Rounds)
	}
	// A single run has no spread and no rounds.
	if !strings.Contains(b.String(), `"workload": "PUT"`) || back.Results[0].Spread != nil || back.Results[0].Rounds != nil {
		t.Errorf("single run: %+v", back.Results[0])
	}
	// The report reads back (bench --compare reads each build's JSON).
	var rep Report
	if err := json.Unmarshal(b.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if got := rep.Results[len(rep.Results)-1]; got.CPUPerOp != Micros(90*time.Microsecond) || got.Latency.P99 != Micros(2*time.Millisecond) ||
		time.Duration(rep.Settings.Duration) != time.Second {
		t.Errorf("read back: %+v, duration %v", got, time.Duration(rep.Settings.Duration))
	}
}

func TestWriteTableShowsSpreadAndConsistency(t *testing.T) {
	r := sampleReport()
	r.Settings.Rounds = 3
	r.Results = append(r.Results, Aggregate(roundResults()))
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"× 3 rounds", "READS", "CPU µs/OP", "linearizable", "10,000", "±10%", "±11%", "±50%"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestCompare(t *testing.T) {
	rep := func(ops float64, cpu time.Duration) *Report {
		return &Report{Results: []Result{
			{Peer: "veltrix-rf1", Workload: "C", Consistency: "ONE", Mode: "closed", OpsPerSec: ops, CPUPerOp: Micros(cpu), Latency: Lat{P99: Micros(time.Millisecond)}},
			// A result of several rounds contributes each round.
			Aggregate([]Result{
				{Peer: "veltrix-rf1", Workload: "PUT", Mode: "closed", OpsPerSec: ops / 2},
				{Peer: "veltrix-rf1", Workload: "PUT", Mode: "closed", OpsPerSec: ops / 2},
			}),
		}}
	}
	base := []*Report{rep(1000, 200*time.Microsecond), rep(3000, 100*time.Microsecond), rep(2000, 150*time.Microsecond)}
	nw := []*Report{rep(4000, 100*time.Microsecond), rep(4000, 50*time.Microsecond), rep(4000, 75*time.Microsecond)}
	nw[0].Results = append(nw[0].Results, Result{Peer: "etcd-1-serializable", Workload: "C"})
	c := Compare("main", "working tree", base, nw)
	if len(c.Rows) != 2 || c.Rounds != 3 {
		t.Fatalf("rows %+v", c.Rows)
	}
	r := c.Rows[0]
	if r.Workload != "C" || r.Consistency != "ONE" || r.Base.OpsPerSec != 2000 || r.New.OpsPerSec != 4000 || r.OpsRatio != 2 || r.CPURatio != 0.5 || r.P99Ratio != 1 {
		t.Errorf("C row: %+v", r)
	}
	if len(r.Base.Rounds) != 3 || r.Base.Rounds[2].Round != 3 {
		t.Errorf("C base rounds: %+v", r.Base.Rounds)
	}
	if p := c.Rows[1]; p.Workload != "PUT" || len(p.New.Rounds) != 6 || p.OpsRatio != 2 {
		t.Errorf("PUT row: %+v", p)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "etcd-1-serializable") {
		t.Errorf("notes %v", c.Notes)
	}
	var b bytes.Buffer
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"working tree (NEW) against main (BASE)", "2.00×", "0.50×", "4,000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCompareImports(t *testing.T) {
	rep := func(perSec, perCPU float64) *Report {
		return &Report{
			MigratorImports: []MigratorImportRow{
				{WritePath: "INGEST", Nodes: 3, ItemsPerSec: perSec, ItemsPerCPUSec: perCPU},
				{WritePath: "BATCH_WRITE", Nodes: 3, ItemsPerSec: perSec / 2, ItemsPerCPUSec: perCPU / 2},
			},
			Imports: []ImportRow{{Peer: "veltrix-rf3", Method: "BatchWrite", ItemsPerSec: perSec, ItemsPerSecCPU: perCPU}},
		}
	}
	base := []*Report{rep(1000, 8000), rep(3000, 9000), rep(2000, 10000)}
	nw := []*Report{rep(4000, 16000), rep(4000, 18000), rep(4000, 20000)}
	nw[1].MigratorImports = append(nw[1].MigratorImports, MigratorImportRow{WritePath: "INGEST", Nodes: 1})
	c := Compare("main", "working tree", base, nw)
	if len(c.Imports) != 3 {
		t.Fatalf("imports %+v", c.Imports)
	}
	in := c.Imports[0]
	if in.Import != "INGEST" || in.Nodes != 3 || in.Base.ItemsPerSec != 2000 || in.New.ItemsPerCPUSec != 18000 ||
		in.ItemsRatio != 2 || in.CPURatio != 2 || in.Base.Rounds != 3 {
		t.Errorf("INGEST row: %+v", in)
	}
	if bw := c.Imports[1]; bw.Import != "BATCH_WRITE" || bw.Base.ItemsPerCPUSec != 4500 {
		t.Errorf("BATCH_WRITE row: %+v", bw)
	}
	if im := c.Imports[2]; im.Import != "BatchWrite" || im.Peer != "veltrix-rf3" || im.CPURatio != 2 {
		t.Errorf("IMPORT row: %+v", im)
	}
	var b bytes.Buffer
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "import INGEST ran only in working tree") {
		t.Errorf("notes %v", c.Notes)
	}
	for _, want := range []string{"ITEMS/CPU-S", "INGEST", "18,000", "2.00×"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestVariantsRunOnlyReadingWorkloads(t *testing.T) {
	o := Options{Workloads: []string{"C", "PUT", "A", "BATCHGET", "GETITEM", "IMPORT"}}
	o.EnsureDefaults()
	names := func(ws []Workload) (n []string) {
		for _, w := range ws {
			n = append(n, w.Name)
		}
		return n
	}
	for _, tc := range []struct {
		peer           string
		want, wantDyna []string
		consistency    string
	}{
		{"veltrix-rf3", []string{"C", "A", "PUT", "BATCHGET"}, []string{"GETITEM"}, "ONE"},
		{"veltrix-rf3-quorum", []string{"C", "A", "BATCHGET"}, nil, "QUORUM"},
		{"etcd-1", []string{"C", "A", "PUT", "BATCHGET"}, nil, "linearizable"},
		{"etcd-1-serializable", []string{"C", "A", "BATCHGET"}, nil, "serializable"},
		{"etcd-3-serializable", []string{"C", "A", "BATCHGET"}, nil, "serializable"},
	} {
		p, ok := PeerByName(tc.peer)
		if !ok {
			t.Fatalf("no peer %s", tc.peer)
		}
		w, d := o.peerWorkloads(p)
		if !slices.Equal(names(w), tc.want) || !slices.Equal(names(d), tc.wantDyna) || p.Consistency != tc.consistency {
			t.Errorf("%s: workloads %v, DynamoDB %v, consistency %q", tc.peer, names(w), names(d), p.Consistency)
		}
		if p.base != "" {
			if b, ok := PeerByName(p.base); !ok || b.base != "" || b.start == nil {
				t.Errorf("%s: base %q is not a started peer", tc.peer, p.base)
			}
		}
	}
}

// TestRoundsSmoke runs two tiny rounds against Veltrix RF 1 and etcd read
// both ways: the peers are interleaved, each keeps its data, every row has
// two rounds and its consistency.
func TestRoundsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts clusters (CI runs it: make test has no -short)")
	}
	var order []string
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Peers: []string{"veltrix-rf1", "etcd-1", "etcd-1-serializable"}, Workloads: []string{"C", "PUT"},
		Keys: 200, ValueSize: 64, Concurrency: 2, Duration: 100 * time.Millisecond, Warmup: -1, Rounds: 2,
		Settle: 3 * time.Second, NoTargets: true, Dir: t.TempDir(), Progress: &progress,
		BeforeWorkload: func(p, w string) { order = append(order, w+"/"+p) },
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	want := []string{
		"C/veltrix-rf1", "C/etcd-1", "C/etcd-1-serializable", "C/veltrix-rf1", "C/etcd-1", "C/etcd-1-serializable",
		"PUT/veltrix-rf1", "PUT/etcd-1", "PUT/veltrix-rf1", "PUT/etcd-1",
	}
	if !slices.Equal(order, want) {
		t.Errorf("order\n got %v\nwant %v", order, want)
	}
	if strings.Count(progress.String(), "etcd-1: loading") != 1 || strings.Contains(progress.String(), "etcd-1-serializable: loading") {
		t.Errorf("etcd-1 not loaded exactly once:\n%s", progress.String())
	}
	cons := map[string]string{"veltrix-rf1": "ONE", "etcd-1": "linearizable", "etcd-1-serializable": "serializable"}
	if len(rep.Results) != 5 {
		t.Errorf("%d results, want 5", len(rep.Results))
	}
	for _, r := range rep.Results {
		if len(r.Rounds) != 2 || r.Rounds[1].Round != 2 || r.Spread == nil || r.Consistency != cons[r.Peer] || r.Ops == 0 {
			t.Errorf("%s/%s: %d rounds, consistency %q, %d ops", r.Peer, r.Workload, len(r.Rounds), r.Consistency, r.Ops)
		}
		if r.Errors > 0 || (r.Workload == "C" && r.NotFound > 0) {
			t.Errorf("%s/%s: %d errors (%s), %d not found", r.Peer, r.Workload, r.Errors, r.FirstError, r.NotFound)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

func TestCPUTargetsCompareLikeWithLike(t *testing.T) {
	r := &Report{Results: []Result{
		{Peer: "veltrix-rf1", Workload: "C", Mode: "closed", Consistency: "ONE", CPUPerOp: Micros(150 * time.Microsecond)},
		{Peer: "etcd-1-serializable", Workload: "C", Mode: "closed", Consistency: "serializable", CPUPerOp: Micros(100 * time.Microsecond)},
		{Peer: "veltrix-rf3-quorum", Workload: "C", Mode: "closed", Consistency: "QUORUM", CPUPerOp: Micros(80 * time.Microsecond)},
		{Peer: "etcd-3", Workload: "C", Mode: "closed", Consistency: "linearizable", CPUPerOp: Micros(100 * time.Microsecond)},
	}}
	r.ComputeTargets()
	got := map[string]Target{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg
	}
	if tg, ok := got["GET CPU µs/op, veltrix-rf1 (ONE) vs etcd-1-serializable (serializable) Range (workload C)"]; !ok || tg.Ratio != 1.5 || tg.Met {
		t.Errorf("RF1 ONE target: %+v (all: %+v)", tg, r.Targets)
	}
	if tg, ok := got["GET CPU µs/op, veltrix-rf3-quorum (QUORUM) vs etcd-3 (linearizable) Range (workload C)"]; !ok || tg.Ratio != 0.8 || !tg.Met {
		t.Errorf("RF3 QUORUM target: %+v (all: %+v)", tg, r.Targets)
	}
	if len(r.Targets) != 2 {
		t.Errorf("%d targets: %+v", len(r.Targets), r.Targets)
	}
}
