package engine

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDataDriven runs the scripts in testdata/scripts. Commands:
//
//	open [grace=DUR] [cache]       reopen the engine on the same filesystem
//	apply                           one record per input line:
//	  put [p=N] [t=N] pk=S [sk=S] v=N [val=S] [exp=DUR]   (exp: time since t0)
//	  del [p=N] [t=N] pk=S [sk=S] v=N
//	get [p=N] [t=N] pk=S [sk=S]
//	getbatch                        one key per input line
//	scan [p=N] [t=N] pk=S [start=S] [end=S] [prefix=S] [limit=N] [maxbytes=N] [reverse] [resume]
//	stream p=N [after=SK] [after-pk=S]
//	digest p=N                      also checks it against a full recomputation
//	advance DUR                     move the clock
//	purge
//	drop p=N
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		h := &ddHarness{t: t, fs: vfs.NewMem(), clock: newTestClock()}
		h.open(Options{})
		defer func() { _ = h.e.Close() }()
		datadriven.RunTest(t, path, h.run)
	})
}

type ddHarness struct {
	t      *testing.T
	fs     vfs.FS
	clock  *testClock
	e      *Engine
	resume []byte
}

func (h *ddHarness) open(o Options) {
	if h.e != nil {
		if err := h.e.Close(); err != nil {
			h.t.Fatal(err)
		}
	}
	o.FS, o.Dir, o.Now, o.PurgeInterval = h.fs, "db", h.clock.Now, -1
	o.Logger = testLogger(h.t)
	o.MemTableSize, o.BlockCacheSize = 1<<20, 1<<20
	e, err := Open(o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.e = e
}

// fields parses "name k=v k=v flag" into its name and arguments.
func fields(line string) (string, map[string]string) {
	f := strings.Fields(line)
	args := make(map[string]string)
	if len(f) == 0 {
		return "", args
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		args[k] = v
	}
	return f[0], args
}

func cmdArgs(td *datadriven.TestData) map[string]string {
	args := make(map[string]string)
	for _, a := range td.CmdArgs {
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	return args
}

func num(t testing.TB, args map[string]string, k string, def uint64) uint64 {
	s, ok := args[k]
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", k, s, err)
	}
	return n
}

func bytesArg(args map[string]string, k string) []byte {
	if s, ok := args[k]; ok {
		return []byte(s)
	}
	return nil
}

func keyArgs(t testing.TB, args map[string]string) Key {
	return Key{
		Partition:    uint32(num(t, args, "p", 0)),
		TableID:      num(t, args, "t", 1),
		PartitionKey: []byte(args["pk"]),
		SortKey:      bytesArg(args, "sk"),
	}
}

func (h *ddHarness) run(t *testing.T, td *datadriven.TestData) string {
	args := cmdArgs(td)
	var out strings.Builder
	switch td.Cmd {
	case "open":
		o := Options{}
		if g, ok := args["grace"]; ok {
			d, err := time.ParseDuration(g)
			if err != nil {
				t.Fatal(err)
			}
			o.TombstoneGrace = d
		}
		if _, ok := args["cache"]; ok {
			o.Cache = newMapCache()
		}
		h.open(o)
		return "ok"

	case "apply":
		var recs []Record
		for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
			op, a := fields(line)
			r := Record{Key: keyArgs(t, a), Version: num(t, a, "v", 0), Value: bytesArg(a, "val")}
			switch op {
			case "put":
			case "del":
				r.Tombstone = true
			default:
				t.Fatalf("unknown record op %q", op)
			}
			if exp, ok := a["exp"]; ok {
				d, err := time.ParseDuration(exp)
				if err != nil {
					t.Fatal(err)
				}
				r.ExpireAt = t0.Add(d).UnixNano()
			}
			if n, ok := a["size"]; ok { // a value of n bytes
				sz, _ := strconv.Atoi(n)
				r.Value = make([]byte, sz)
			}
			recs = append(recs, r)
		}
		outcomes, err := h.e.Apply(recs)
		if err != nil {
			return "error: " + err.Error()
		}
		for _, o := range outcomes {
			fmt.Fprintln(&out, o)
		}
		checkDigests(t, h.e)

	case "get":
		r, found, err := h.e.Get(keyArgs(t, args))
		switch {
		case err != nil:
			return "error: " + err.Error()
		case !found:
			return "absent"
		}
		return formatRecord(r)

	case "getbatch":
		var keys []Key
		for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
			_, a := fields("key " + line)
			keys = append(keys, keyArgs(t, a))
		}
		recs, found, err := h.e.GetBatch(keys)
		if err != nil {
			return "error: " + err.Error()
		}
		for i := range recs {
			if found[i] {
				fmt.Fprintln(&out, formatRecord(recs[i]))
			} else {
				fmt.Fprintln(&out, "absent")
			}
		}

	case "scan":
		k := keyArgs(t, args)
		o := ScanOptions{
			Partition: k.Partition, TableID: k.TableID, PartitionKey: k.PartitionKey,
			Start: bytesArg(args, "start"), End: bytesArg(args, "end"), Prefix: bytesArg(args, "prefix"),
			Limit: int(num(t, args, "limit", 0)), MaxBytes: int(num(t, args, "maxbytes", 0)),
		}
		_, o.Reverse = args["reverse"]
		if _, ok := args["resume"]; ok {
			o.Resume = h.resume
		}
		recs, resume, err := h.e.Scan(o)
		if err != nil {
			return "error: " + err.Error()
		}
		for _, r := range recs {
			fmt.Fprintln(&out, formatRecord(r))
		}
		h.resume = resume
		if resume != nil {
			fmt.Fprintln(&out, "more")
		}
		if out.Len() == 0 {
			return "empty"
		}

	case "stream":
		var after []byte
		if sk, ok := args["after"]; ok {
			after = EncodeKey(Key{Partition: uint32(num(t, args, "p", 0)), TableID: num(t, args, "t", 1),
				PartitionKey: []byte(args["after-pk"]), SortKey: []byte(sk)})
		}
		err := h.e.StreamPartition(uint32(num(t, args, "p", 0)), after, func(r Record) error {
			fmt.Fprintln(&out, formatRecord(r))
			return nil
		})
		if err != nil {
			return "error: " + err.Error()
		}
		if out.Len() == 0 {
			return "empty"
		}

	case "digest":
		checkDigests(t, h.e)
		d, err := h.e.Digest(uint32(num(t, args, "p", 0)))
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("count=%d sum=%016x", d.Count, d.Sum)

	case "advance":
		d, err := time.ParseDuration(td.CmdArgs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(d)
		return "now=" + h.clock.Now().Sub(t0).String()

	case "purge":
		st, err := h.e.Purge()
		if err != nil {
			return "error: " + err.Error()
		}
		checkDigests(t, h.e)
		return fmt.Sprintf("tombstones=%d expired=%d", st.Tombstones, st.Expired)

	case "drop":
		if err := h.e.DropPartition(uint32(num(t, args, "p", 0))); err != nil {
			return "error: " + err.Error()
		}
		checkDigests(t, h.e)
		return "ok"

	default:
		t.Fatalf("unknown command %q", td.Cmd)
	}
	return out.String()
}
