package server

import "github.com/veltrixdb/veltrix/services/storage/internal/engine"

// Purge runs a purge pass on the node's engine now.
func (s *Server) Purge() (engine.PurgeStats, error) { return s.eng.Purge() }
