package topology

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ReconnectMaxDelay bounds the etcd client's reconnect backoff. gRPC's
// default grows to 120s, so after a long etcd outage a node could wait two
// minutes before it even tried to re-register; one second keeps recovery
// within seconds of etcd answering again.
const ReconnectMaxDelay = time.Second

// ClientConfig is the etcd client config every Veltrix process uses for
// endpoints: a short dial timeout and a reconnect backoff capped at
// ReconnectMaxDelay.
func ClientConfig(endpoints []string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   ReconnectMaxDelay,
			},
			MinConnectTimeout: time.Second,
		})},
	}
}
