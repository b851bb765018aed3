// Package dialopts holds the gRPC connection settings every Veltrix client
// uses: the public Go client (package client) and the services' connections
// to each other (pkg/grpcx.Dial). They live in the client module, which
// depends on grpc alone, so the services and the client share one definition
// without the client importing the services' libraries.
package dialopts

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageSize is the largest gRPC message a Veltrix client or server
// sends or accepts: a 64 MiB value plus its key and framing.
const MaxMessageSize = 64<<20 + 1<<20

// Options returns the dial options of a Veltrix connection: plaintext (pass
// grpc.WithTransportCredentials after them for TLS), MaxMessageSize both
// ways, keepalives, and a reconnect backoff capped at one second. Options
// given after these override them.
func Options() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageSize),
			grpc.MaxCallSendMsgSize(MaxMessageSize),
		),
		// Servers allow pings every 5s (grpcx.NewServer); 30s stays well
		// clear of their too_many_pings limit.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// gRPC's default reconnect backoff grows to 120s: a node restarted
		// after a minute's outage would stay unreachable to its peers and
		// routers (and a router to its clients) for up to two more. Peers
		// are few; retrying every second costs nothing.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
}
