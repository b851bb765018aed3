package server

import "github.com/veltrixdb/veltrix/services/storage/internal/engine"

// Purge runs a purge pass on the node's engine now.
func (s *Server) Purge() (engine.PurgeStats, error) { return s.eng.Purge() }

// WatcherEpoch is the placement epoch the node has seen.
func (s *Server) WatcherEpoch() uint64 { return s.watcher.Snapshot().Epoch() }
