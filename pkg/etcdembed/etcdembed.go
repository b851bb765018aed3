// Package etcdembed runs a single-member etcd server in-process
// (go.etcd.io/etcd/server/v3/embed) on loopback. Tests use it for a real
// etcd without installing anything; the dev stack uses it so one machine
// needs nothing but Go.
package etcdembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config configures Start.
type Config struct {
	// Dir holds etcd's data. Required; reusing it restarts the same member.
	Dir string
	// ClientPort is the client port on 127.0.0.1. Default 0: a free port.
	ClientPort int
	// PeerPort is the peer port on 127.0.0.1. Default 0: a free port.
	PeerPort int
	// UnsafeNoFsync skips fsync (tests only: a crash may lose data).
	UnsafeNoFsync bool
	// StartTimeout bounds the wait for the member to be ready. Default 30s.
	StartTimeout time.Duration
	// ClientTLS, when set, serves clients over TLS (https://) and requires
	// a client certificate from its CA.
	ClientTLS *ClientTLS
}

// ClientTLS names the PEM files of the member's client listener: its
// certificate and key, and the CA that client certificates must chain to.
type ClientTLS struct {
	CertFile, KeyFile, CAFile string
}

// Etcd is a running embedded etcd member.
type Etcd struct {
	e         *embed.Etcd
	endpoint  string
	tls       *transport.TLSInfo
	closeOnce sync.Once
}

// Start starts a member and waits until it serves clients.
func Start(cfg Config) (*Etcd, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcdembed: Config.Dir is required")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	// A free port found by listening can be taken by someone else before
	// etcd binds it; retry a few times with fresh ports.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		e, err := start(cfg)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if cfg.ClientPort != 0 && cfg.PeerPort != 0 {
			break
		}
	}
	return nil, lastErr
}

func start(cfg Config) (*Etcd, error) {
	clientPort, peerPort := cfg.ClientPort, cfg.PeerPort
	var err error
	if clientPort == 0 {
		if clientPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if peerPort == 0 {
		if peerPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcdembed: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = "veltrix"
	ec.Dir = cfg.Dir
	scheme := "http"
	var tlsInfo *transport.TLSInfo
	if t := cfg.ClientTLS; t != nil {
		scheme = "https"
		tlsInfo = &transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile, ClientCertAuth: true}
		ec.ClientTLSInfo = *tlsInfo
	}
	cu := url.URL{Scheme: scheme, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	pu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdembed: start in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdembed: member failed: %w", err)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcdembed: member in %s not ready after %s", cfg.Dir, cfg.StartTimeout)
	}
	return &Etcd{e: e, endpoint: cu.String(), tls: tlsInfo}, nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:23790 (https:// with
// ClientTLS).
func (e *Etcd) Endpoint() string { return e.endpoint }

// Client opens a new client to the member; the caller closes it. With
// ClientTLS it presents the member's own certificate as its client
// certificate.
func (e *Etcd) Client() (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   []string{e.endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if e.tls != nil {
		tc, err := e.tls.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcdembed: client TLS: %w", err)
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// Close stops the member and waits for it to exit. It may be called more
// than once.
func (e *Etcd) Close() {
	e.closeOnce.Do(func() {
		e.e.Close()
		<-e.e.Server.StopNotify()
	})
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("etcdembed: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
