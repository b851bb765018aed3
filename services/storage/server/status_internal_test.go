package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("put: %w", engine.ErrClosed), codes.Unavailable},
		{fmt.Errorf("put: %w", engine.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("get: %w", context.Canceled), codes.Canceled},
		// A bug is not a reason to retry: Internal, not Unavailable.
		{errors.New("index out of range"), codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.want {
			t.Errorf("toStatus(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
