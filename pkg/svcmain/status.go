package svcmain

import (
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ToStatus converts err to a gRPC status at a service's edge. A status
// (other than Unknown) passes through, even wrapped; context errors become
// Canceled or DeadlineExceeded; code maps the service's own errors (its
// sentinels, with errors.Is), returning codes.Unknown for the others; and
// whatever is left is Internal: an error nobody anticipated is a bug, and
// Unavailable would make every client retry it.
func ToStatus(err error, code func(error) codes.Code) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Err()
	}
	if c, ok := grpcx.ContextCode(err); ok {
		return status.Error(c, err.Error())
	}
	if c := code(err); c != codes.Unknown && c != codes.OK {
		return status.Error(c, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
