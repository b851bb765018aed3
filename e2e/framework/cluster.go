package framework

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Options shape a cluster. Zero values take the defaults.
type Options struct {
	// Nodes is the number of storage nodes. Default 3.
	Nodes int
	// RF is the replication factor. Default min(3, Nodes).
	RF int
	// Partitions is P. Default 64 (small clusters place faster).
	Partitions uint32
	// Routers is the number of routers. Default 1.
	Routers int
	// Migrator also starts a veltrix-migrator; the test is skipped if its
	// package does not exist yet.
	Migrator bool
	// NoSync starts the storage nodes with --no-sync (acknowledged writes
	// may be lost in a crash). Default false: every write is synced.
	NoSync bool
	// Cluster is the cluster name. Default "e2e".
	Cluster string
	// RouterStateDir gives each router a --state-dir of its own (under
	// Cluster.Dir), where it persists the topology to start from while etcd
	// is unreachable. Default false.
	RouterStateDir bool
	// StorageArgs, RouterArgs and MigratorArgs are extra flags.
	StorageArgs, RouterArgs, MigratorArgs []string
	// StartTimeout bounds each process's wait for SERVING. Default 60s.
	StartTimeout time.Duration
	// StopTimeout bounds each graceful stop before SIGKILL. Default 20s.
	StopTimeout time.Duration
	// ReadyTimeout bounds the wait for the routers to place partitions on
	// every node. Default 60s.
	ReadyTimeout time.Duration
	// FaultProxies puts a FaultProxy in front of every storage node, whose
	// address the node advertises, so routers and peer nodes reach it only
	// through the proxy and Cluster.Partition can cut it off. Default
	// false.
	FaultProxies bool
	// DynamoDB gives every router a DynamoDB endpoint (--dynamodb-addr) on
	// a free loopback port; Cluster.DynamoDBEndpoints lists them. Default
	// false.
	DynamoDB bool
	// TLS secures every storage node, router and migrator with the
	// certificates of a PKI made in Cluster.Dir (Cluster.PKI): each gets
	// --tls-cert-file, --tls-key-file and --tls-ca-file of its role. The
	// framework's own health and readiness dials and Client then use TLS
	// too, presenting the admin principal's certificate (a storage node's
	// health dial presents the storage certificate: storage nodes accept
	// services only). DynamoDBEndpoints are https. Default false.
	TLS bool
	// Auth turns authentication on (implies TLS): routers get --auth
	// --auth-key-file <PKI.AuthKeyFile> --auth-admins admin, the migrator
	// --auth --auth-admins admin. Default false.
	Auth bool
}

func (o *Options) ensureDefaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.RF == 0 {
		o.RF = min(3, o.Nodes)
	}
	if o.Partitions == 0 {
		o.Partitions = 64
	}
	if o.Routers == 0 {
		o.Routers = 1
	}
	if o.Cluster == "" {
		o.Cluster = "e2e"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Auth {
		o.TLS = true
	}
}

// Cluster is a running cluster of real processes.
type Cluster struct {
	// Bins are the binaries the processes run.
	Bins Binaries
	// Opts are the options with defaults filled in.
	Opts Options
	// Dir holds every process's data directory and log.
	Dir string
	// Etcd is the etcd member.
	Etcd *Process
	// Nodes are the storage nodes storage-1..N, with node ids n1..nN.
	Nodes []*Process
	// Routers are the routers router-1..N, with router ids r1..rN.
	Routers []*Process
	// Migrator is the migrator, nil unless Options.Migrator.
	Migrator *Process
	// Proxies[i] is the FaultProxy in front of Nodes[i], nil unless
	// Options.FaultProxies.
	Proxies []*FaultProxy
	// PKI holds the certificates of a secured cluster, nil unless
	// Options.TLS.
	PKI *PKI

	// newProc builds a process of the cluster (see Start).
	newProc func(name, bin string, args []string, ports ...*portFlag) *Process
}

// Start builds the binaries (once per test process) and starts etcd, the
// routers, the storage nodes and the migrator, each as its own process on
// free loopback ports with its data under t.TempDir() and its own log file.
// It returns once every process answers its health check with SERVING and
// every router has placed partitions on every node. When the test ends the
// processes are stopped (SIGTERM, then SIGKILL) and, if the test failed,
// every log is printed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	o.ensureDefaults()
	bins := Build(t)
	var migratorBin string
	if o.Migrator {
		migratorBin = bins.Path(t, Migrator)
	}
	begin := time.Now()
	c := &Cluster{Bins: bins, Opts: o, Dir: t.TempDir()}
	// Registered after TempDir, so it runs before the directory is removed.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		c.shutdown(t)
		cancel()
	})
	if o.TLS {
		c.PKI = NewPKI(t, filepath.Join(c.Dir, "pki"))
	}
	newProc := func(name, bin string, args []string, ports ...*portFlag) *Process {
		p := &Process{
			Name: name, LogPath: filepath.Join(c.Dir, name+".log"),
			bin: bin, args: args, ports: ports,
			startTimeout: o.StartTimeout, stopTimeout: o.StopTimeout, ctx: ctx,
		}
		if c.PKI != nil && name != "etcd" {
			role, cert := tlsx.RoleRouter, c.PKI.Admin
			switch {
			case strings.HasPrefix(name, "storage"):
				role, cert = tlsx.RoleStorage, c.PKI.Services[tlsx.RoleStorage]
			case strings.HasPrefix(name, "migrator"):
				role = tlsx.RoleMigrator
			}
			p.args = append(c.PKI.TLSArgs(role), p.args...)
			p.dialTLS = func() (*tls.Config, error) {
				return fileClientTLS(tlsx.Files{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: c.PKI.CAFile})
			}
		}
		return p
	}
	c.newProc = newProc

	c.Etcd = newProc("etcd", bins.Etcd,
		[]string{"--data-dir", filepath.Join(c.Dir, "etcd"), "--unsafe-no-fsync"},
		&portFlag{flag: "client-port", grpc: true}, &portFlag{flag: "peer-port"})
	if err := c.Etcd.start(false); err != nil {
		t.Fatal(err)
	}
	etcdURL := c.EtcdEndpoint()

	for i := 1; i <= o.Routers; i++ {
		args := []string{
			"--router-id", "r" + strconv.Itoa(i), "--cluster", o.Cluster, "--etcd-endpoints", etcdURL,
			"--partitions", strconv.Itoa(int(o.Partitions)), "--replication-factor", strconv.Itoa(o.RF),
			"--min-nodes", strconv.Itoa(o.Nodes), "--shutdown-timeout", "5s",
		}
		if o.Auth {
			args = append(args, "--auth", "--auth-key-file", c.PKI.AuthKeyFile, "--auth-admins", AdminPrincipal)
		}
		if o.RouterStateDir {
			args = append(args, "--state-dir", filepath.Join(c.Dir, "router-"+strconv.Itoa(i)+"-state"))
		}
		ports := []*portFlag{{flag: "listen-addr", hostPort: true, grpc: true}, {flag: "metrics-addr", hostPort: true}}
		if o.DynamoDB {
			ports = append(ports, &portFlag{flag: "dynamodb-addr", hostPort: true})
		}
		c.Routers = append(c.Routers, newProc("router-"+strconv.Itoa(i), bins.Router, append(args, o.RouterArgs...), ports...))
	}
	for i := 1; i <= o.Nodes; i++ {
		c.Nodes = append(c.Nodes, c.newNode(t, i))
	}
	// Routers first: they bootstrap the cluster config the nodes join.
	startAll(t, c.Routers)
	startAll(t, c.Nodes)
	if o.Migrator {
		args := []string{
			"--migrator-id", "m1", "--cluster", o.Cluster, "--etcd-endpoints", etcdURL,
			"--router-endpoints", strings.Join(c.RouterAddrs(), ","), "--shutdown-timeout", "5s",
		}
		if o.Auth {
			args = append(args, "--auth", "--auth-admins", AdminPrincipal)
		}
		c.Migrator = newProc("migrator", migratorBin, append(args, o.MigratorArgs...),
			&portFlag{flag: "listen-addr", hostPort: true, grpc: true}, &portFlag{flag: "metrics-addr", hostPort: true})
		startAll(t, []*Process{c.Migrator})
	}
	c.WaitReady(t)
	t.Logf("framework: cluster started in %s", time.Since(begin).Round(time.Millisecond))
	for _, p := range c.Processes() {
		t.Logf("framework: %s serving on %s (pid %d, log %s)", p.Name, p.Addr(), p.PID(), p.LogPath)
	}
	return c
}

// newNode builds storage node i (storage-i, node id ni) and, with
// Options.FaultProxies, its proxy.
func (c *Cluster) newNode(t testing.TB, i int, extra ...string) *Process {
	o := c.Opts
	name := "storage-" + strconv.Itoa(i)
	args := []string{
		"--node-id", "n" + strconv.Itoa(i), "--cluster", o.Cluster, "--etcd-endpoints", c.EtcdEndpoint(),
		"--data-dir", filepath.Join(c.Dir, name), "--no-sync=" + strconv.FormatBool(o.NoSync),
		"--cache-bytes", strconv.Itoa(16 << 20), "--shutdown-timeout", "5s",
	}
	node := c.newProc(name, c.Bins.Storage, append(append(args, o.StorageArgs...), extra...),
		&portFlag{flag: "listen-addr", hostPort: true, grpc: true}, &portFlag{flag: "metrics-addr", hostPort: true})
	if o.FaultProxies {
		px, err := NewFaultProxy(node.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Proxies = append(c.Proxies, px)
		node.args = append(node.args, "--advertise-addr", px.Addr())
	}
	return node
}

// AddNode starts one more storage node (storage-N+1, node id nN+1) with
// the cluster's storage flags plus extra, and returns it once it serves.
// It joins the cluster as a new node would.
func (c *Cluster) AddNode(t testing.TB, extra ...string) *Process {
	t.Helper()
	n := c.newNode(t, len(c.Nodes)+1, extra...)
	c.Nodes = append(c.Nodes, n)
	startAll(t, []*Process{n})
	t.Logf("framework: %s serving on %s (pid %d, log %s)", n.Name, n.Addr(), n.PID(), n.LogPath)
	return n
}

// startAll starts processes concurrently and fails the test if any fails.
func startAll(t testing.TB, procs []*Process) {
	t.Helper()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.start(false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// shutdown stops the routers and the migrator, then the storage nodes, then
// etcd (each group concurrently), so every process can shut down gracefully
// with etcd still there. A process that does not stop gracefully fails the
// test. If the test failed, every log is printed.
func (c *Cluster) shutdown(t testing.TB) {
	for _, p := range c.Processes() {
		if p.exitedOnItsOwn() {
			t.Errorf("framework: %s exited on its own during the test (%v); log tail:\n%s", p.Name, p.ExitErr(), p.LogTail(4096))
		}
	}
	var first []*Process
	first = append(first, c.Routers...)
	if c.Migrator != nil {
		first = append(first, c.Migrator)
	}
	start := time.Now()
	defer func() { t.Logf("framework: cluster stopped in %s", time.Since(start).Round(time.Millisecond)) }()
	for _, group := range [][]*Process{first, c.Nodes, {c.Etcd}} {
		errs := make([]error, len(group))
		var wg sync.WaitGroup
		for i, p := range group {
			if p == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = p.stop()
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("framework: stop %s: %v", group[i].Name, err)
			}
		}
	}
	for _, px := range c.Proxies {
		_ = px.Close()
	}
	// Every process must be gone: stop waited for each; check anyway.
	for _, p := range c.Processes() {
		if p.Running() {
			t.Errorf("framework: %s (pid %d) still running after shutdown", p.Name, p.PID())
		}
	}
	if t.Failed() {
		for _, p := range c.Processes() {
			t.Logf("framework: ===== log of %s (%s) =====\n%s", p.Name, p.LogPath, p.LogTail(logDumpBytes))
		}
	}
}

// Processes lists every process of the cluster.
func (c *Cluster) Processes() []*Process {
	var out []*Process
	if c.Etcd != nil {
		out = append(out, c.Etcd)
	}
	out = append(out, c.Routers...)
	out = append(out, c.Nodes...)
	if c.Migrator != nil {
		out = append(out, c.Migrator)
	}
	return slices.DeleteFunc(out, func(p *Process) bool { return p == nil })
}

// EtcdEndpoint is etcd's client URL.
func (c *Cluster) EtcdEndpoint() string { return "http://" + c.Etcd.Addr() }

// RouterAddrs are the routers' gRPC addresses.
func (c *Cluster) RouterAddrs() []string {
	var out []string
	for _, r := range c.Routers {
		out = append(out, r.Addr())
	}
	return out
}

// DynamoDBEndpoints are the routers' DynamoDB endpoint URLs
// (http://127.0.0.1:PORT, https with Options.TLS), empty unless
// Options.DynamoDB.
func (c *Cluster) DynamoDBEndpoints() []string {
	scheme := "http://"
	if c.PKI != nil {
		scheme = "https://"
	}
	var out []string
	for _, r := range c.Routers {
		if p := r.Port("dynamodb-addr"); p != 0 {
			out = append(out, scheme+net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		}
	}
	return out
}

// MigratorAddr is the migrator's gRPC address, "" without a migrator.
func (c *Cluster) MigratorAddr() string {
	if c.Migrator == nil {
		return ""
	}
	return c.Migrator.Addr()
}

// Client returns a pkg/client Client of every router, closed when the test
// ends. With Options.TLS it trusts the cluster's CA and presents the admin
// principal's certificate; opts come after, so a test can override both
// (client.WithDialOptions(grpc.WithTransportCredentials(...))).
func (c *Cluster) Client(t testing.TB, opts ...client.Option) *client.Client {
	t.Helper()
	if c.PKI != nil {
		opts = append([]client.Option{client.WithDialOptions(grpc.WithTransportCredentials(
			credentials.NewTLS(ClientTLS(t, Pool(c.PKI.CA), c.PKI.Admin))))}, opts...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, c.RouterAddrs(), opts...)
	if err != nil {
		t.Fatalf("framework: client of %v: %v", c.RouterAddrs(), err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// WaitReady waits until every running router reports a placement in which
// every running storage node is UP, and its topology is fresh.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	var want []string
	for i, n := range c.Nodes {
		if n.Running() {
			want = append(want, "n"+strconv.Itoa(i+1))
		}
	}
	deadline := time.Now().Add(c.Opts.ReadyTimeout)
	for _, r := range c.Routers {
		if !r.Running() {
			continue
		}
		if err := waitPlaced(r, want, deadline); err != nil {
			t.Fatalf("framework: cluster not ready: %v", err)
		}
	}
}

func waitPlaced(r *Process, want []string, deadline time.Time) error {
	cc, err := r.dial(r.Addr())
	if err != nil {
		return err
	}
	defer cc.Close()
	admin := kvv1.NewAdminServiceClient(cc)
	last := "no answer yet"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := admin.ClusterStatus(ctx, &kvv1.ClusterStatusRequest{})
		cancel()
		if err != nil {
			last = err.Error()
		} else if msg := placedProblem(st, want); msg != "" {
			last = msg
		} else {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s; log tail:\n%s", r.Name, last, r.LogTail(4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// placedProblem says why st is not ready, or "" when it is.
func placedProblem(st *kvv1.ClusterStatusResponse, want []string) string {
	if st.GetPlacementEpoch() == 0 {
		return "no placement yet"
	}
	if st.GetTopologyStale() {
		return "topology stale"
	}
	up := map[string]bool{}
	for _, n := range st.GetNodes() {
		up[n.GetId()] = n.GetState() == kvv1.NodeState_NODE_STATE_UP
	}
	for _, id := range want {
		if !up[id] {
			return fmt.Sprintf("node %s not UP in placement epoch %d (nodes: %v)", id, st.GetPlacementEpoch(), st.GetNodes())
		}
	}
	return ""
}

// Partition cuts Nodes[i] off from the routers and from its peers while it
// keeps running (it still reaches etcd, so its lease holds): its proxy
// blackholes every connection to it, and every other node's proxy
// blackholes the connections it opens. Needs Options.FaultProxies.
func (c *Cluster) Partition(t testing.TB, i int) {
	t.Helper()
	if c.Proxies == nil {
		t.Fatal("framework: Partition needs Options.FaultProxies")
	}
	c.Proxies[i].Cut()
	pid := c.Nodes[i].PID()
	for j, px := range c.Proxies {
		if j == i {
			continue
		}
		if err := px.CutFrom(pid); err != nil {
			t.Fatalf("framework: cut %s from %s: %v", c.Nodes[i].Name, c.Nodes[j].Name, err)
		}
	}
}

// Heal ends every Partition: blackholed connections are closed and new
// ones go through again.
func (c *Cluster) Heal(t testing.TB) {
	t.Helper()
	for _, px := range c.Proxies {
		px.Heal()
	}
}
