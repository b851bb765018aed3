// Package server is the embeddable router: it watches the topology in etcd,
// runs the placement controller election, and serves the public
// veltrix.kv.v1 KVService and AdminService over gRPC, replicating every
// request to the storage nodes. The veltrix-router binary, the dev stack and
// the tests all start it the same way: fill a Config, Start, Close.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Config configures a router.
type Config struct {
	// ID identifies the router in the controller election and in
	// ClusterStatus. Default: <hostname>-<random>.
	ID string
	// ListenAddr is the public gRPC address. Default: 127.0.0.1:7400.
	ListenAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it.
	MetricsAddr string
	// Cluster is the cluster name (etcd key prefix). Default: "default".
	Cluster string
	// EtcdEndpoints are the etcd client URLs; ignored when EtcdClient is set.
	// Default: http://127.0.0.1:2379.
	EtcdEndpoints []string
	// EtcdClient, when set, is used instead of dialing EtcdEndpoints. The
	// router does not close it.
	EtcdClient *clientv3.Client
	// Partitions is P, used only when this router bootstraps the cluster.
	// Default: 1024.
	Partitions uint32
	// ReplicationFactor is RF, used only at bootstrap. Default: 3.
	ReplicationFactor int
	// MinNodes is how many storage nodes must register before the first
	// placement. Default: ReplicationFactor.
	MinNodes int
	// HedgeMin and HedgeMax clamp the delay before a slow read is hedged to
	// another replica. Defaults: 1ms and 50ms.
	HedgeMin, HedgeMax time.Duration
	// NoHintedHandoff turns hinted handoff off: records a replica missed
	// are then repaired by anti-entropy alone. Default: false (on).
	NoHintedHandoff bool
	// RequestTimeout is the deadline of a request that carries none.
	// Default: 10s.
	RequestTimeout time.Duration
	// MaxBatch is the most keys or mutations in one batch request. Default:
	// 1000.
	MaxBatch int
	// MaxVersionSkew is how far ahead of the router's clock a
	// caller-supplied version may be; a write further ahead is refused with
	// InvalidArgument, since no later write could ever replace it. Default:
	// 1h.
	MaxVersionSkew time.Duration
	// StateDir, when set, is where the router persists the last topology
	// snapshot (topology.json) whenever it changes, and where it starts
	// from when etcd does not answer within EtcdStartTimeout: the router
	// then serves from that snapshot (stale) until etcd returns. Without a
	// persisted snapshot it refuses to start. Default: empty (off).
	StateDir string
	// EtcdStartTimeout is how long Start waits for etcd before falling back
	// to the persisted snapshot (or giving up without one). Default: 5s
	// with StateDir, 30s without.
	EtcdStartTimeout time.Duration
	// TopologyGrace is how long after an etcd outage a node whose
	// registration vanished (its lease expired while etcd was down) is still
	// counted as a replica, unless it registers again first. Default: 30s.
	TopologyGrace time.Duration
	// ShutdownTimeout bounds the graceful drain on Close. Default: 10s.
	ShutdownTimeout time.Duration
	// DeadAfter is how long an active storage node may stay unregistered
	// before the placement controller declares it dead and re-creates its
	// replicas on the others; negative: never (the flag's 0). Default: 15m.
	DeadAfter time.Duration
	// MaxMovesPerNode bounds the replica moves a storage node takes part in
	// at once (as destination or live source). Default: 2.
	MaxMovesPerNode int
	// PresenceTTL is the lease TTL of the router's presence key, which
	// reports the placement epoch it routes by. Default: 10s.
	PresenceTTL time.Duration
	// DynamoDBAddr is the HTTP address of the DynamoDB-compatible endpoint
	// (flag --dynamodb-addr); empty turns it off. Default: empty (off).
	DynamoDBAddr string
	// DynamoDBRegion is the region the endpoint reports in table ARNs.
	// Default: "veltrix".
	DynamoDBRegion string
	// Upstream is how the router reaches the DynamoDB tables being migrated
	// from (migration mode).
	Upstream UpstreamConfig
	// MigrationSkew is S, the skew allowance of migration mode's re-syncs
	// (docs/design.md, "Migration mode: convergence"): at least twice the
	// largest clock error between a router and DynamoDB (flag
	// --migration-skew). Default: 1s.
	MigrationSkew time.Duration
	// TLS are the router's certificate, key and CA files. With a
	// certificate the gRPC listener and the DynamoDB endpoint serve TLS
	// (HTTPS), verifying a client certificate against the CA when one is
	// presented, and the router presents its certificate to the storage
	// nodes it dials. Default: none (plaintext).
	TLS tlsx.Files
	// EtcdTLS are the etcd client's TLS files (https:// endpoints).
	// Default: none.
	EtcdTLS tlsx.Files
	// MetricsTLS serves /metrics over HTTPS with the TLS certificate.
	// Default: false.
	MetricsTLS bool
	// Auth configures authentication and per-table permissions (flags
	// --auth, --auth-key-file, --auth-admins). Default: off.
	Auth AuthConfig
	// Logger receives the router's logs. Default: slog.Default().
	Logger *slog.Logger
}

// UpstreamConfig holds the credentials the router uses for upstream
// DynamoDB (migration mode: DescribeTable at start, proxying, mirroring,
// re-syncs). The endpoint URL and region come with each migration
// (Upstream in the migration's document); credentials are never stored
// there. Empty fields leave the AWS SDK's default chain to find
// credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared config,
// SSO, instance role). AWSConfig turns them into an aws.Config.
type UpstreamConfig struct {
	// AccessKeyID and SecretAccessKey are static credentials (flags
	// --upstream-access-key-id, --upstream-secret-access-key); both or
	// neither. Default: the SDK's default chain.
	AccessKeyID, SecretAccessKey string
	// SessionToken goes with temporary static credentials (flag
	// --upstream-session-token). Default: empty.
	SessionToken string
}

// addrs are the router's default addresses.
var addrs = svcmain.Addrs{Listen: "127.0.0.1:7400", FlagMetrics: "127.0.0.1:9400"}

// common points at the fields every service has.
func (c *Config) common() svcmain.Common {
	return svcmain.Common{
		Cluster: &c.Cluster, EtcdEndpoints: &c.EtcdEndpoints, EtcdClientSet: c.EtcdClient != nil,
		ListenAddr: &c.ListenAddr, MetricsAddr: &c.MetricsAddr, ShutdownTimeout: &c.ShutdownTimeout,
		TLS: &c.TLS, EtcdTLS: &c.EtcdTLS, MetricsTLS: &c.MetricsTLS,
	}
}

// AddFlags registers the config's flags on fs (each also read from its
// VELTRIX_* environment variable), with EnsureDefaults' defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	var d Config
	d.EnsureDefaults()
	fs.StringVar(&c.ID, "router-id", "", "router id (default: hostname plus a random suffix)")
	c.common().AddFlags(fs, addrs)
	fs.Func("partitions", fmt.Sprintf("partitions P, used when bootstrapping a new cluster (default %d)", d.Partitions), func(s string) error {
		var p uint32
		if _, err := fmt.Sscan(s, &p); err != nil {
			return err
		}
		c.Partitions = p
		return nil
	})
	fs.IntVar(&c.ReplicationFactor, "replication-factor", d.ReplicationFactor, "replicas per partition, used when bootstrapping a new cluster")
	fs.IntVar(&c.MinNodes, "min-nodes", 0, "storage nodes required before the first placement (default: the replication factor)")
	fs.DurationVar(&c.HedgeMin, "hedge-min", d.HedgeMin, "shortest delay before hedging a slow read")
	fs.DurationVar(&c.HedgeMax, "hedge-max", d.HedgeMax, "longest delay before hedging a slow read")
	fs.Var((*invertedBool)(&c.NoHintedHandoff), "hinted-handoff", "send the writes a replica missed to one that acknowledged them, to replay when it is back (default true)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", d.RequestTimeout, "deadline for requests that carry none")
	fs.IntVar(&c.MaxBatch, "max-batch", d.MaxBatch, "most keys or mutations per batch request")
	fs.DurationVar(&c.MaxVersionSkew, "max-version-skew", d.MaxVersionSkew, "refuse caller-supplied versions further ahead of the router's clock than this")
	fs.StringVar(&c.StateDir, "state-dir", "", "directory for the persisted topology snapshot the router starts from when etcd is unreachable (empty: off)")
	fs.DurationVar(&c.EtcdStartTimeout, "etcd-start-timeout", 0, "how long start-up waits for etcd before using the persisted snapshot or failing (default 5s with --state-dir, 30s without)")
	fs.DurationVar(&c.TopologyGrace, "topology-grace", d.TopologyGrace, "how long after an etcd outage a node whose registration vanished is still counted as a replica")
	c.DeadAfter = d.DeadAfter
	fs.Func("dead-after", fmt.Sprintf("declare an active storage node dead after it stayed unregistered this long, and re-create its replicas on the others; 0: never (default %s)", d.DeadAfter), func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		if v == 0 {
			v = -1
		}
		c.DeadAfter = v
		return nil
	})
	fs.IntVar(&c.MaxMovesPerNode, "max-moves-per-node", d.MaxMovesPerNode, "most replica moves a storage node takes part in at once")
	fs.StringVar(&c.DynamoDBAddr, "dynamodb-addr", "", "HTTP address of the DynamoDB-compatible endpoint, e.g. 127.0.0.1:8000 (empty: off)")
	fs.StringVar(&c.DynamoDBRegion, "dynamodb-region", d.DynamoDBRegion, "region the DynamoDB endpoint reports in table ARNs")
	fs.DurationVar(&c.MigrationSkew, "migration-skew", d.MigrationSkew, "skew allowance S added to migration re-sync versions: at least twice the largest clock error between routers and DynamoDB")
	fs.StringVar(&c.Upstream.AccessKeyID, "upstream-access-key-id", "", "access key id for upstream DynamoDB in migration mode (empty: the AWS SDK's default credential chain)")
	fs.StringVar(&c.Upstream.SecretAccessKey, "upstream-secret-access-key", "", "secret access key for upstream DynamoDB in migration mode (with --upstream-access-key-id)")
	fs.StringVar(&c.Upstream.SessionToken, "upstream-session-token", "", "session token for temporary upstream credentials (optional)")
	fs.BoolVar(&c.Auth.Enabled, "auth", false, "authenticate every gRPC call (client certificate or bearer token) and check per-table permissions; off, every call may do everything")
	fs.StringVar(&c.Auth.KeyFile, "auth-key-file", "", "file of 64 hex characters: the AES-256 key sealing API key secrets in etcd (needed to create keys and for SigV4; the same on every router)")
	fs.Var((*flagenv.StringList)(&c.Auth.Admins), "auth-admins", "comma-separated principals that may do everything (bootstrap, e.g. the principal of an admin client certificate)")
}

// EnsureDefaults fills unset fields with their defaults: the one place
// they are written (AddFlags takes its defaults from here).
func (c *Config) EnsureDefaults() {
	if c.ID == "" {
		c.ID = svcmain.DefaultID()
	}
	c.common().EnsureDefaults(addrs)
	if c.Partitions == 0 {
		c.Partitions = 1024
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 3
	}
	if c.HedgeMin == 0 {
		c.HedgeMin = time.Millisecond
	}
	if c.HedgeMax == 0 {
		c.HedgeMax = 50 * time.Millisecond
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.MigrationSkew == 0 {
		c.MigrationSkew = time.Second
	}
	if c.MaxVersionSkew == 0 {
		c.MaxVersionSkew = kvrecord.DefaultMaxVersionSkew
	}
	if c.EtcdStartTimeout == 0 {
		c.EtcdStartTimeout = 30 * time.Second
		if c.StateDir != "" {
			c.EtcdStartTimeout = 5 * time.Second
		}
	}
	if c.TopologyGrace == 0 {
		c.TopologyGrace = 30 * time.Second
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 15 * time.Minute
	}
	if c.MaxMovesPerNode == 0 {
		c.MaxMovesPerNode = 2
	}
	if c.PresenceTTL == 0 {
		c.PresenceTTL = 10 * time.Second
	}
	if c.DynamoDBRegion == "" {
		c.DynamoDBRegion = "veltrix"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	errs := c.common().Validate()
	if c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("--partitions %d: at most 65536", c.Partitions))
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > 7 {
		errs = append(errs, fmt.Errorf("--replication-factor %d: want 1 to 7", c.ReplicationFactor))
	}
	if c.MinNodes < 0 {
		errs = append(errs, fmt.Errorf("--min-nodes %d: negative", c.MinNodes))
	}
	if c.HedgeMin > c.HedgeMax {
		errs = append(errs, fmt.Errorf("--hedge-min %s exceeds --hedge-max %s", c.HedgeMin, c.HedgeMax))
	}
	if c.MaxBatch < 1 || c.MaxBatch > 100000 {
		errs = append(errs, fmt.Errorf("--max-batch %d: want 1 to 100000", c.MaxBatch))
	}
	if c.EtcdStartTimeout < 0 {
		errs = append(errs, fmt.Errorf("--etcd-start-timeout %s: negative", c.EtcdStartTimeout))
	}
	if c.TopologyGrace < 0 {
		errs = append(errs, fmt.Errorf("--topology-grace %s: negative", c.TopologyGrace))
	}
	if c.MaxMovesPerNode < 1 {
		errs = append(errs, fmt.Errorf("--max-moves-per-node %d: want at least 1", c.MaxMovesPerNode))
	}
	if c.MaxVersionSkew < 0 {
		errs = append(errs, fmt.Errorf("--max-version-skew %s: negative", c.MaxVersionSkew))
	}
	if c.DynamoDBAddr != "" {
		if _, _, err := net.SplitHostPort(c.DynamoDBAddr); err != nil {
			errs = append(errs, fmt.Errorf("--dynamodb-addr %q: want host:port: %v", c.DynamoDBAddr, err))
		}
	}
	if c.MigrationSkew < 0 {
		errs = append(errs, fmt.Errorf("--migration-skew %s: negative", c.MigrationSkew))
	}
	for _, a := range c.Auth.Admins {
		if err := auth.ValidatePrincipalName(a); err != nil {
			errs = append(errs, fmt.Errorf("--auth-admins: %v", err))
		}
	}
	if (c.Upstream.AccessKeyID == "") != (c.Upstream.SecretAccessKey == "") {
		errs = append(errs, errors.New("--upstream-access-key-id and --upstream-secret-access-key: give both or neither"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("router: invalid config: %w", err)
	}
	return nil
}

// upstreamAttempts is the AWS SDK retryer's attempts per upstream call
// (its standard retryer: backoff with jitter, throttling and 5xx retried);
// nothing else retries these calls.
const upstreamAttempts = 3

// resolveUpstreamRegion returns u with its region, or when it names none
// the AWS SDK's default region as this router resolves it (AWS_REGION, else
// the region of the shared config's profile: AWS_PROFILE,
// AWS_CONFIG_FILE). With neither it refuses (InvalidArgument naming
// --region): AWS's endpoints need the table's region, and a guess signs
// for the wrong one. StartMigration stores the result, so every router
// uses the same region whatever its environment.
func (c *Config) resolveUpstreamRegion(ctx context.Context, u *migrationv1.Upstream) (*migrationv1.Upstream, error) {
	if u.GetRegion() != "" {
		return u, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, invalidf("upstream.region: none given, and the AWS SDK's configuration on router %s cannot be read (%v); pass --region with the upstream table's region", c.ID, err)
	}
	if cfg.Region == "" {
		return nil, invalidf("upstream.region: none given, and the AWS SDK resolves none on router %s (AWS_REGION, or region in the shared config's profile); pass --region with the upstream table's region (for dynalite or DynamoDB Local any name, e.g. --region us-east-1)", c.ID)
	}
	out := proto.Clone(u).(*migrationv1.Upstream)
	out.Region = cfg.Region
	return out, nil
}

// UpstreamAWSConfig returns the AWS SDK configuration for calls to u: its
// endpoint (empty: AWS's regional one) and region (empty, in documents from
// before StartMigration resolved one: the SDK's default, else
// DynamoDBRegion), with Upstream's static credentials when set, else the
// SDK's default chain. Every upstream DynamoDB client of migration mode is
// built from it.
func (c *Config) UpstreamAWSConfig(ctx context.Context, u *migrationv1.Upstream) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = upstreamAttempts })
		}),
	}
	if up := c.Upstream; up.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(up.AccessKeyID, up.SecretAccessKey, up.SessionToken)))
	}
	if r := u.GetRegion(); r != "" {
		opts = append(opts, awsconfig.WithRegion(r))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("router: AWS configuration for upstream %s: %w", u.GetEndpoint(), err)
	}
	if cfg.Region == "" {
		cfg.Region = c.DynamoDBRegion
	}
	if e := u.GetEndpoint(); e != "" {
		cfg.BaseEndpoint = aws.String(e)
	}
	return cfg, nil
}

// invertedBool is a boolean flag that sets the negation of its field, so a
// feature on by default keeps a zero-value Config field.
type invertedBool bool

func (b *invertedBool) String() string {
	if b == nil {
		return "true"
	}
	return strconv.FormatBool(!bool(*b))
}

func (b *invertedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b = invertedBool(!v)
	return nil
}

func (b *invertedBool) IsBoolFlag() bool { return true }
