package coord

import (
	"errors"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNeed(t *testing.T) {
	for _, tc := range []struct {
		level Level
		rf    int
		want  int
		name  string
	}{
		{One, 1, 1, "ONE"}, {One, 3, 1, "ONE"}, {One, 5, 1, "ONE"},
		{Quorum, 1, 1, "QUORUM"}, {Quorum, 2, 2, "QUORUM"}, {Quorum, 3, 2, "QUORUM"}, {Quorum, 4, 3, "QUORUM"}, {Quorum, 5, 3, "QUORUM"},
		{All, 1, 1, "ALL"}, {All, 3, 3, "ALL"}, {All, 5, 5, "ALL"},
		{Level(9), 3, 2, "Level(9)"}, // unknown levels are QUORUM
	} {
		if got := Need(tc.level, tc.rf); got != tc.want {
			t.Errorf("Need(%s, %d) = %d, want %d", tc.level, tc.rf, got, tc.want)
		}
		if tc.level.String() != tc.name {
			t.Errorf("Level(%d).String() = %q, want %q", int(tc.level), tc.level.String(), tc.name)
		}
	}
}

func TestStaleEpoch(t *testing.T) {
	withInfo := func(reason string, md map[string]string) error {
		st, err := status.New(codes.FailedPrecondition, "refused").WithDetails(&errdetails.ErrorInfo{Reason: reason, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name  string
		err   error
		want  uint64
		stale bool
	}{
		{"epoch named", withInfo(staleReason, map[string]string{"changed_epoch": "9", "partition": "900"}), 9, true},
		{"older epoch named: at least the next", withInfo(staleReason, map[string]string{"node_epoch": "2"}), 6, true},
		{"unparsable epoch", withInfo(staleReason, map[string]string{"epoch": "x"}), 6, true},
		{"message only", status.Error(codes.FailedPrecondition, "stale placement epoch 5"), 6, true},
		{"another reason", withInfo("OTHER", map[string]string{"epoch": "9"}), 0, false},
		{"another code", status.Error(codes.Unavailable, "stale placement epoch"), 0, false},
		{"not a status", errors.New("stale placement epoch"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stale := staleEpoch(tc.err, 5)
			if got != tc.want || stale != tc.stale {
				t.Fatalf("staleEpoch = %d, %v; want %d, %v", got, stale, tc.want, tc.stale)
			}
		})
	}
	if err := markStale(nil, 3); err != nil {
		t.Errorf("markStale(nil) = %v", err)
	}
	if err := markStale(ErrUnavailable, 0); err != ErrUnavailable {
		t.Errorf("markStale(err, 0) = %v", err)
	}
	var se *staleError
	if err := markStale(ErrUnavailable, 3); !errors.As(err, &se) || se.epoch != 3 || !errors.Is(err, ErrUnavailable) {
		t.Errorf("markStale(err, 3) = %v", err)
	}
}

// TestNotReady: before the cluster has a config, every operation says so.
func TestNotReady(t *testing.T) {
	co := New(cluster.NewStaticDocument(placement.Document{}, nil), Options{})
	_, err := co.Read(t.Context(), key(0, "k"), One)
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "no cluster config") {
		t.Fatalf("Read: %v", err)
	}
	if _, err := co.Write(t.Context(), nil, One); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Write: %v", err)
	}
	if _, err := co.BatchRead(t.Context(), nil, One); !errors.Is(err, ErrNotReady) {
		t.Fatalf("BatchRead: %v", err)
	}
	if _, _, err := co.Query(t.Context(), QueryOptions{}, One); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Query: %v", err)
	}
}
