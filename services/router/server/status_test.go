package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("put: %w", coord.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("table t: %w", topology.ErrTableNotFound), codes.NotFound},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		// A bug is not a reason to retry: Internal, not Unavailable.
		{errors.New("index out of range"), codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.want {
			t.Errorf("toStatus(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
