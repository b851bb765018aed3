package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

const (
	crashDirEnv   = "VELTRIX_ENGINE_CRASH_DIR"
	crashRoundEnv = "VELTRIX_ENGINE_CRASH_ROUND"
	crashWriters  = 4
)

// crashRecords is what writer w writes in step i of a round: a new item,
// an overwrite of the writer's hot key, and every fifth step a delete of
// the previous step's item.
func crashRecords(round, w, i int) []Record {
	item := func(j int) Key {
		return Key{Partition: uint32(w*3 + j%3), TableID: 7, PartitionKey: fmt.Appendf(nil, "r%d-w%d", round, w), SortKey: fmt.Appendf(nil, "%08d", j)}
	}
	recs := []Record{
		{Key: item(i), Version: uint64(i + 1), Value: crashValue(round, w, i)},
		{Key: Key{Partition: 100, TableID: 7, PartitionKey: fmt.Appendf(nil, "hot-w%d", w)}, Version: uint64(round)<<32 | uint64(i+1), Value: crashValue(round, w, i)},
	}
	if i%5 == 4 {
		recs = append(recs, Record{Key: item(i - 1), Version: uint64(i + 1), Tombstone: true})
	}
	return recs
}

func crashValue(round, w, i int) []byte {
	v := fmt.Appendf(nil, "round %d writer %d step %d|", round, w, i)
	return bytes.Repeat(v, 1+(i*7919)%100) // up to a few KiB, so memtables flush
}

// TestCrashHelper is the child process of TestCrash: it writes synced
// batches until it is killed (or gives up after a bounded run) and prints
// each step's number once Apply has returned.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	e, err := Open(Options{Dir: dir, PurgeInterval: -1, MemTableSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
				if _, err := e.Apply(crashRecords(round, w, i)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d %d\n", w, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := e.Close(); err != nil {
		t.Error(err)
	}
}

// TestCrash kills a writing process with SIGKILL and checks that every write
// it acknowledged is there after a restart, twice over the same directory.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills processes")
	}
	dir := t.TempDir()
	rounds := make(map[int]map[int]int)
	for round := 1; round <= 3; round++ {
		acked := runCrashHelper(t, dir, round)
		rounds[round] = acked
		e, err := Open(Options{Dir: dir, PurgeInterval: -1, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		// Every round so far: a second crash must not lose the first's writes.
		for r, acked := range rounds {
			for w := range crashWriters {
				for i := 0; i <= acked[w]; i++ {
					checkCrashItem(t, e, r, w, i, acked[w])
				}
			}
		}
		total := 0
		for w := range crashWriters {
			last := acked[w]
			total += last + 1
			r, found, err := e.Get(crashRecords(round, w, 0)[1].Key)
			if err != nil || !found || r.Version < uint64(round)<<32|uint64(last+1) {
				t.Fatalf("round %d writer %d: hot key at version %d (found %v, %v), acknowledged %d",
					round, w, r.Version&0xffffffff, found, err, last+1)
			}
		}
		checkDigests(t, e)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged steps all present after SIGKILL", round, total)
	}
}

func checkCrashItem(t *testing.T, e *Engine, round, w, i, last int) {
	t.Helper()
	recs := crashRecords(round, w, i)
	r, found, err := e.Get(recs[0].Key)
	if err != nil || !found {
		t.Fatalf("round %d writer %d step %d: acknowledged item missing (found %v, %v)", round, w, i, found, err)
	}
	deletedBy := i + 1 // the step that deletes this item, if any
	switch {
	case deletedBy%5 == 4 && deletedBy <= last:
		if !r.Tombstone || r.Version != uint64(deletedBy+1) {
			t.Fatalf("round %d writer %d step %d: acknowledged delete missing: %s", round, w, i, formatRecord(r))
		}
	case deletedBy%5 == 4 && r.Tombstone:
		// The delete was written but not acknowledged before the kill.
	default:
		if r.Tombstone || r.Version != uint64(i+1) || !bytes.Equal(r.Value, recs[0].Value) {
			t.Fatalf("round %d writer %d step %d: got version %d tombstone %v, %d value bytes", round, w, i, r.Version, r.Tombstone, len(r.Value))
		}
	}
}

// runCrashHelper starts the helper, lets it acknowledge some writes, kills
// it with SIGKILL and returns the last acknowledged step of each writer.
func runCrashHelper(t *testing.T, dir string, round int) map[int]int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	acked := make(map[int]int)
	for w := range crashWriters {
		acked[w] = -1
	}
	n := 0
	record := func(line string) {
		var w, i int
		if _, err := fmt.Sscanf(line, "ack %d %d", &w, &i); err != nil {
			return // the test framework's own output
		}
		if i != acked[w]+1 {
			t.Errorf("writer %d acknowledged step %d after %d", w, i, acked[w])
		}
		acked[w] = i
		n++
	}
	// Kill at a random point after at least 200 acknowledgements.
	want := 500 + rand.IntN(2000)
	timeout := time.After(60 * time.Second)
	exited := false
wait:
	for n < want {
		select {
		case line, ok := <-lines:
			if !ok {
				exited = true
				break wait
			}
			record(line)
		case <-timeout:
			break wait
		}
	}
	if exited || n < want {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		t.Fatalf("round %d: helper stopped after %d acknowledgements, before it was killed; stderr:\n%s", round, n, stderr.String())
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acknowledgements still in the pipe count too.
	for line := range lines {
		record(line)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: helper was not killed by SIGKILL: %v; stderr:\n%s", round, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Fatalf("round %d: helper panicked:\n%s", round, stderr.String())
	}
	t.Logf("round %d: killed the writer after %d acknowledged steps", round, n)
	return acked
}

// TestPowerLoss simulates losing power at random moments while writers run:
// a crash clone of the filesystem keeps only what was synced (and a random
// part of what was not), so it checks that Apply returns only after the sync
// that makes its write durable, which SIGKILL alone cannot show.
func TestPowerLoss(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := openTest(t, Options{FS: fs})
	rng := rand.New(rand.NewPCG(1, 2))
	var acked [crashWriters]atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range crashWriters {
		acked[w].Store(-1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000 && !stop.Load(); i++ {
				if _, err := e.Apply(crashRecords(1, w, i)); err != nil {
					t.Error(err)
					return
				}
				acked[w].Store(int64(i))
			}
		}()
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	for crash := range 5 {
		time.Sleep(time.Duration(20+rng.IntN(50)) * time.Millisecond)
		var last [crashWriters]int
		for w := range crashWriters {
			last[w] = int(acked[w].Load())
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(60), RNG: rng})
		e2, err := Open(Options{FS: clone, Dir: "db", PurgeInterval: -1, MemTableSize: 4 << 20, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("crash %d: reopen: %v", crash, err)
		}
		n := 0
		for w := range crashWriters {
			for i := 0; i <= last[w]; i++ {
				checkCrashItem(t, e2, 1, w, i, last[w])
			}
			n += last[w] + 1
		}
		checkDigests(t, e2)
		if err := e2.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("crash %d: %d acknowledged steps survived", crash, n)
	}
}

var errInjectedSync = errors.New("injected WAL sync failure")

// TestWALSyncFailure fails every WAL sync after writers have run: the
// Apply whose sync fails is not acknowledged (ErrWriteFailed), nor is any
// later one, and after a power loss every acknowledged Apply is there and
// the failed one is there whole or not at all. The failing Apply runs alone:
// Pebble panics on any WAL write after a failed sync, so a commit racing
// the failure would crash the process (which acknowledges nothing either).
func TestWALSyncFailure(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var failing atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if failing.Load() && strings.HasSuffix(op.Path, ".log") {
				return errInjectedSync
			}
		}
		return nil
	}))
	e := openTest(t, Options{FS: fs})
	const steps = 50
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range steps {
				if _, err := e.Apply(crashRecords(1, w, i)); err != nil {
					t.Errorf("writer %d step %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	failing.Store(true)
	failed := crashRecords(1, 0, steps)
	if _, err := e.Apply(failed); !errors.Is(err, ErrWriteFailed) || !errors.Is(err, errInjectedSync) {
		t.Fatalf("Apply whose WAL sync fails: %v, want ErrWriteFailed wrapping the sync error", err)
	}
	if _, err := e.Apply(crashRecords(1, 1, steps)); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("Apply after a failed sync: %v, want ErrWriteFailed", err)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(3, 4))})
	t.Logf("close after the failure: %v", e.Close())
	e2, err := Open(Options{FS: clone, Dir: "db", PurgeInterval: -1, MemTableSize: 4 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer e2.Close()
	for w := range crashWriters {
		for i := range steps {
			checkCrashItem(t, e2, 1, w, i, steps-1)
		}
	}
	_, itemFound, err1 := e2.Get(failed[0].Key)
	hot, _, err2 := e2.Get(failed[1].Key)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if itemFound != (hot.Version == failed[1].Version) {
		t.Fatalf("half of the failed Apply survived: item found %v, hot key at version %d, the Apply's %d",
			itemFound, hot.Version, failed[1].Version)
	}
	checkDigests(t, e2)
}
