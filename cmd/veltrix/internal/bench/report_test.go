package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sampleMeasurement(ops uint64, lat time.Duration, rate float64) *Measurement {
	m := &Measurement{Ops: ops, Keys: ops, Elapsed: time.Second, TargetRate: rate, ByKind: map[OpKind]*Histogram{}}
	for range ops {
		m.Latency.Record(lat)
	}
	return m
}

func sampleReport() *Report {
	r := &Report{
		Command: "veltrix bench --duration 1s",
		Machine: Machine{CPUs: 2, GOMAXPROCS: 2, GoVersion: "go1.26", OS: "linux/amd64", LoadBefore: "0.10 0.20 0.30"},
		Settings: Settings{Keys: 1000, ValueSize: 1024, Concurrency: 32, Duration: Seconds(time.Second),
			Distribution: Zipfian, Sync: true},
		Peers: []PeerInfo{
			{Name: "veltrix-rf1", Durability: "WAL fsync", LoadSeconds: Seconds(time.Second), LoadKeysSec: 1000},
			{Name: "redis", Skipped: "redis-server not found"},
		},
	}
	add := func(peer, w string, m *Measurement, note string) {
		res := ResultOf(peer, w, m)
		res.Note = note
		r.Results = append(r.Results, res)
	}
	add("veltrix-rf1", "C", sampleMeasurement(9000, 500*time.Microsecond, 0), "")
	add("veltrix-rf1", "C", sampleMeasurement(4500, 800*time.Microsecond, 4500), HalfPeakNote)
	add("veltrix-rf1", "PUT", sampleMeasurement(6000, 2*time.Millisecond, 0), "")
	add("etcd-1", "C", sampleMeasurement(10000, 400*time.Microsecond, 0), "")
	add("etcd-1", "C", sampleMeasurement(5000, 1600*time.Microsecond, 5000), HalfPeakNote)
	add("etcd-1", "PUT", sampleMeasurement(3000, 3*time.Millisecond, 0), "")
	bg := sampleMeasurement(1000, time.Millisecond, 0)
	bg.Keys = 16000
	add("veltrix-rf1", "BATCHGET", bg, "")
	mget := sampleMeasurement(2500, time.Millisecond, 0)
	mget.Keys = 40000
	add("redis", "BATCHGET", mget, "")
	r.RedisBenchmark = &RedisBenchmarkRow{Command: "redis-benchmark -P 16", RPS: 40000, Pipeline: 16, Concurrency: 32}
	r.Imports = []ImportRow{{Peer: "veltrix-rf1", Items: 1000, ItemBytes: 1024, Seconds: Seconds(time.Second),
		ItemsPerSec: 100000, MBPerSec: 102.4, ItemsPerSecCPU: 50000, VsClaim: 50000.0 / ClaimItemsPerVCPU, Method: "test"}}
	return r
}

func TestComputeTargets(t *testing.T) {
	r := sampleReport()
	r.ComputeTargets()
	want := map[string]struct {
		ratio float64
		met   bool
	}{
		"GET ops/s, veltrix-rf1 vs etcd-1 Range (workload C)":                          {0.9, true},
		"PUT ops/s, veltrix-rf1 vs etcd-1 Put":                                         {2, true},
		"BatchGet keys/s, veltrix-rf1 vs Redis MGET (same keys, 16 per call)":          {0.4, false},
		"GET P99 at 50% of peak, veltrix-rf1 (open loop) vs etcd-1 at 50% of its peak": {0.5, true},
		"bulk import items/s per core, RF 1":                                           {50000.0 / 42000, true},
	}
	if len(r.Targets) != len(want) {
		t.Errorf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for _, tg := range r.Targets {
		w, ok := want[tg.Name]
		if !ok {
			t.Errorf("unexpected target %q", tg.Name)
			continue
		}
		if tg.Met != w.met || (w.ratio > 0 && (tg.Ratio < w.ratio-0.01 || tg.Ratio > w.ratio+0.01)) {
			t.Errorf("%s: ratio %.3f met %t, want %.3f %t", tg.Name, tg.Ratio, tg.Met, w.ratio, w.met)
		}
	}
}

func TestWriteTable(t *testing.T) {
	r := sampleReport()
	r.ComputeTargets()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"1000 keys × 1024 B values, 32 clients, zipfian keys, closed loop",
		"load average 0.10 0.20 0.30 before",
		"command: veltrix bench --duration 1s",
		"skipped: redis-server not found",
		"open 4,500/s (50% of peak)",
		"9,000", "16,000", "0.500", "2.00",
		"redis-benchmark: redis-benchmark -P 16 → 40,000 GET/s",
		"ITEMS/S PER CORE (2)", "50,000", "1.19×",
		"PUT ops/s, veltrix-rf1 vs etcd-1 Put", "2.00×", "≥ 1.50×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Rows are grouped by workload: C rows come before PUT rows.
	if strings.Index(out, "etcd-1  closed") > 0 && strings.Index(out, " PUT ") < strings.Index(out, "etcd-1  closed") {
		t.Errorf("rows not grouped by workload:\n%s", out)
	}
}

func TestWriteJSON(t *testing.T) {
	r := sampleReport()
	r.ComputeTargets()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Settings struct {
			Duration float64 `json:"duration_s"`
		} `json:"settings"`
		Results []struct {
			Peer      string  `json:"peer"`
			Workload  string  `json:"workload"`
			Mode      string  `json:"mode"`
			OpsPerSec float64 `json:"ops_per_s"`
			Latency   struct {
				P50 float64 `json:"p50_us"`
				P99 float64 `json:"p99_us"`
			} `json:"latency"`
		} `json:"results"`
		Targets []struct {
			Name string `json:"name"`
			Met  bool   `json:"met"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if back.Settings.Duration != 1 {
		t.Errorf("duration_s %g", back.Settings.Duration)
	}
	if len(back.Results) != 8 || back.Results[0].Peer != "veltrix-rf1" || back.Results[0].OpsPerSec != 9000 {
		t.Errorf("results: %+v", back.Results)
	}
	if p := back.Results[0].Latency.P50; p < 500 || p > 505 {
		t.Errorf("p50_us %g, want about 500", p)
	}
	if back.Results[1].Mode != "open" {
		t.Errorf("half-peak mode %q", back.Results[1].Mode)
	}
	if len(back.Targets) != 5 {
		t.Errorf("targets: %+v", back.Targets)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtRate(0), "-"},
		{fmtRate(999.6), "1,000"},
		{fmtRate(1234567), "1,234,567"},
		{fmtRate(12), "12"},
		{fmtLat(Micros(250 * time.Microsecond)), "0.250"},
		{fmtLat(Micros(4900 * time.Microsecond)), "4.90"},
		{fmtLat(Micros(42 * time.Millisecond)), "42.0"},
		{fmtLat(Micros(1234 * time.Millisecond)), "1234"},
		{fmtRatio(1.5), "1.50×"},
		{fmtRatio(0), "-"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseRedisBenchmarkCSV(t *testing.T) {
	out := []byte(`"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"GET","862068.94","0.893","0.184","0.839","1.271","1.599","3.135"
`)
	res, err := parseRedisBenchmarkCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Command != "GET" || res.RPS != 862068.94 || res.P50 != 0.839 || res.P99 != 1.599 || res.Max != 3.135 {
		t.Errorf("%+v", res)
	}
	if _, err := parseRedisBenchmarkCSV([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{Workloads: []string{"A", "nope", "import"}, Peers: []string{"etcd-1", "mysql"}, Concurrency: -1}
	o.EnsureDefaults()
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`workload "nope"`, `peer "mysql"`, "concurrency -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	o = Options{}
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if len(o.orderedWorkloads()) != len(Workloads) || !o.wants(ImportWorkload) || len(o.orderedPeers()) != len(Peers) {
		t.Errorf("defaults do not select everything: %v %v", o.Workloads, o.Peers)
	}
}

// TestTLSAuthCostTarget: the "TLS + auth cost" rows divide the secure
// peer's median CPU µs/op by veltrix-rf1's, give the range of the ratios of
// rounds run back to back, and hold gRPC GET and PUT (not the DynamoDB
// endpoint) to 1.15×.
func TestTLSAuthCostTarget(t *testing.T) {
	rounds := func(peer, w string, cpu ...time.Duration) Result {
		var rs []Result
		for i, c := range cpu {
			rs = append(rs, Result{Peer: peer, Workload: w, Mode: "closed", Round: i + 1, CPUPerOp: Micros(c)})
		}
		return Aggregate(rs)
	}
	us := time.Microsecond
	r := &Report{Results: []Result{
		rounds("veltrix-rf1", "C", 100*us, 80*us, 120*us),
		rounds(SecurePeer, "C", 110*us, 90*us, 120*us), // rounds 1.10, 1.125, 1.00; medians 110/100
		rounds("veltrix-rf1", "PUT", 100*us, 100*us, 100*us),
		rounds(SecurePeer, "PUT", 120*us, 118*us, 130*us), // median 120/100
		rounds("veltrix-rf1", "GETITEM", 100*us),
		rounds(SecurePeer, "GETITEM", 150*us),
		rounds(SecurePeer, "BATCHGET", 150*us), // no reference: no row
	}}
	r.ComputeTargets()
	var got []Target
	for _, tg := range r.Targets {
		if strings.HasPrefix(tg.Name, "TLS + auth cost") {
			got = append(got, tg)
		}
	}
	want := []struct {
		name           string
		ratio, lo, hi  float64
		met            bool
		wantText, note string
	}{
		{"TLS + auth cost, GET (workload C) CPU µs/op, veltrix-rf1-secure vs veltrix-rf1", 1.10, 1.00, 1.125, true, "≤ 1.15×", "rounds 1.00–1.12×"},
		{"TLS + auth cost, PUT CPU µs/op, veltrix-rf1-secure vs veltrix-rf1", 1.20, 1.18, 1.30, false, "≤ 1.15×", "rounds 1.18–1.30×"},
		{"TLS + auth cost, GetItem (DynamoDB endpoint, SigV4) CPU µs/op, veltrix-rf1-secure vs veltrix-rf1", 1.50, 1.50, 1.50, true, NoTargetWant, "rounds 1.50–1.50×"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d cost targets, want %d: %+v", len(got), len(want), r.Targets)
	}
	near := func(a, b float64) bool { return a > b-1e-9 && a < b+1e-9 }
	for i, w := range want {
		tg := got[i]
		if tg.Name != w.name || !near(tg.Ratio, w.ratio) || !near(tg.RatioMin, w.lo) || !near(tg.RatioMax, w.hi) ||
			tg.Met != w.met || tg.Want != w.wantText || tg.Note != w.note {
			t.Errorf("target %d: %+v\nwant %+v", i, tg, w)
		}
	}
}
