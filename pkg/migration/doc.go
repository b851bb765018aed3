// Package migration is the control plane of migration mode: the phase of
// each migrating table (stored in etcd, watched by every router), its
// history, the durable queue of items whose Veltrix copy must be re-synced
// from DynamoDB, the sample of shadow-read mismatches and the per-router
// figures behind the exit criteria. The router's DynamoDB endpoint asks it
// where each request goes (the routing functions in phase.go) and reports
// to it through Control. docs/design.md, "Migration mode", has the phases
// and the convergence argument.
package migration
