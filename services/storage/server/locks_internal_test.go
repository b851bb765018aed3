package server

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"github.com/veltrixdb/veltrix/services/storage/internal/locks"
)

// TestLockGraceFromHorizon: after a restart the node's grace period ends
// at the stored horizon, at most one maximum lease after the start; a
// directory without a horizon never granted a lock and has none, unless
// it stands in for an earlier directory of the node id. A grant stores a
// horizon that covers it before it is made, as a crash right after it
// needs.
func TestLockGraceFromHorizon(t *testing.T) {
	for _, tc := range []struct {
		name         string
		horizon      time.Duration // from now; 0: none stored
		reincarnated bool
		wantLeft     time.Duration // 0: no grace
	}{
		{"no horizon", 0, false, 0},
		{"no horizon, new directory for a known node id", 0, true, locks.MaxLease},
		{"horizon passed", -time.Second, false, 0},
		{"horizon ahead", 3 * time.Second, false, 3 * time.Second},
		{"horizon far ahead: capped at one maximum lease", time.Hour, true, locks.MaxLease},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := engine.Open(engine.Options{Dir: filepath.Join(t.TempDir(), "pebble"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			if tc.horizon != 0 {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], uint64(time.Now().Add(tc.horizon).UnixNano()))
				if err := eng.SetMeta(lockHorizonMeta, v[:]); err != nil {
					t.Fatal(err)
				}
			}
			s := &Server{eng: eng, startTime: time.Now(), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			lt, err := s.newLockTable(tc.reincarnated)
			if err != nil {
				t.Fatal(err)
			}
			k := locks.Key{TableID: 1, PartitionKey: "a"}
			tok, err := lt.Lock(t.Context(), k, "o", 2*time.Second, 0)
			var ge *locks.GraceError
			switch {
			case tc.wantLeft == 0 && err != nil:
				t.Fatalf("lock: %v, want a grant", err)
			case tc.wantLeft != 0 && !errors.As(err, &ge):
				t.Fatalf("lock: %v, want a grace refusal", err)
			case tc.wantLeft != 0:
				if ge.Left > tc.wantLeft || ge.Left < tc.wantLeft-time.Second {
					t.Fatalf("grace left %s, want about %s", ge.Left, tc.wantLeft)
				}
				return
			}
			b, found, err := eng.Meta(lockHorizonMeta)
			if err != nil || !found {
				t.Fatalf("no horizon stored by a grant: %v", err)
			}
			if h := time.Unix(0, int64(binary.BigEndian.Uint64(b))); h.Before(time.Now().Add(2 * time.Second)) {
				t.Fatalf("stored horizon %v does not cover the 2s lease", h)
			}
			lt.Unlock(k, tok)
		})
	}
}
