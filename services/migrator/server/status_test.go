package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/veltrixdb/veltrix/services/migrator/internal/jobs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"not found", fmt.Errorf("job j1: %w", jobs.ErrNotFound), codes.NotFound},
		{"exists", jobs.ErrExists, codes.AlreadyExists},
		{"finished", jobs.ErrFinished, codes.FailedPrecondition},
		{"invalid", jobs.ErrInvalid, codes.InvalidArgument},
		{"cancelled", fmt.Errorf("list: %w", context.Canceled), codes.Canceled},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"status passes through", fmt.Errorf("put: %w", status.Error(codes.ResourceExhausted, "slow down")), codes.ResourceExhausted},
		{"etcd keeps its code", fmt.Errorf("claim: %w", rpctypes.ErrNoLeader), codes.Unavailable},
		// A bug is not a reason to retry: Internal, not Unavailable.
		{"unknown", errors.New("index out of range"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(toStatus(tc.err)); got != tc.want {
				t.Fatalf("toStatus(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
	if toStatus(nil) != nil {
		t.Fatal("nil error became a status")
	}
}
