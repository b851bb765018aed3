package server

import (
	"errors"
	"fmt"
	"sync"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc"
)

// peerPool holds one connection per peer address, shared by anti-entropy
// and hint replay.
type peerPool struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by address; nil once closed
	// dialOpts are the node's own (TLS) dial options, set at start.
	dialOpts []grpc.DialOption
}

func newPeerPool() *peerPool { return &peerPool{conns: map[string]*grpc.ClientConn{}} }

// client returns a StorageService client for node n.
func (pp *peerPool) client(snap *topology.Snapshot, n string) (storagev1.StorageServiceClient, error) {
	node, ok := snap.Nodes[n]
	if !ok {
		return nil, fmt.Errorf("node %s is not registered", n)
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.conns == nil {
		return nil, errors.New("storage: node stopping")
	}
	cc, ok := pp.conns[node.Address]
	if !ok {
		var err error
		if cc, err = grpcx.Dial(node.Address, pp.dialOpts...); err != nil {
			return nil, fmt.Errorf("dial %s at %s: %w", n, node.Address, err)
		}
		pp.conns[node.Address] = cc
	}
	return storagev1.NewStorageServiceClient(cc), nil
}

func (pp *peerPool) close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, cc := range pp.conns {
		_ = cc.Close()
	}
	pp.conns = nil
}
