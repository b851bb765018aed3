// Package framework runs Veltrix end-to-end tests against the real
// binaries: it builds veltrix-storage, veltrix-router, veltrix-migrator and
// the veltrix CLI once per test process, spawns etcd, storage nodes, routers
// and the migrator as separate processes on free loopback ports, waits until
// each answers the standard gRPC health check with SERVING, and lets fault
// tests kill (SIGKILL), stop (SIGTERM) and restart them for real.
//
// etcd is a real member in its own process: cmd/etcd-embedded wraps
// pkg/etcdembed, so the tests need nothing installed but Go.
//
// Every wait is bounded, every process has its own log file (printed when
// the test fails), and every process is stopped when the test ends: SIGTERM
// first, which must shut it down gracefully, then SIGKILL. On Linux a
// spawned process also dies with the test binary (PR_SET_PDEATHSIG), and
// Main reports any process still running after the tests.
//
// A test starts a cluster, talks to it and breaks it:
//
//	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Routers: 2})
//	cl := c.Client(t) // pkg/client over every router
//	c.Nodes[1].Kill(t)    // SIGKILL, waits until reaped
//	c.Nodes[1].Restart(t) // same flags, data dir and (if free) port; waits for SERVING
//
// With Options.FaultProxies every storage node advertises a FaultProxy of
// the test's own on loopback, so a test can also cut a running node off the
// network, both ways, and heal it:
//
//	c.Partition(t, 2) // routers and peers reach storage-3 no more, nor it them
//	c.Heal(t)
//
// With Options.TLS every storage node, router and migrator runs with the
// certificates of a PKI the framework makes in the test's directory
// (Cluster.PKI: a CA, a service certificate per role, the "admin"
// principal's client certificate), and Options.Auth adds --auth; the
// framework's own dials and Cluster.Client then use TLS as the admin:
//
//	c := framework.Start(t, framework.Options{Auth: true, DynamoDB: true})
//	cl := c.Client(t) // TLS, admin client certificate
//	other := framework.NewCA(t, t.TempDir(), "other") // for refusals
//
// The package's TestMain should call Main, which removes the built
// binaries and reports orphans.
//
// The in-process cluster of e2e/cluster is the integration tier; this
// package is the end-to-end tier.
package framework
