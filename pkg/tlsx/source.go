package tlsx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// DefaultReloadInterval is how often a Source polls its files for new
// content.
const DefaultReloadInterval = time.Second

// Files are the PEM files of one TLS identity: a certificate, its key, and
// the CA certificates that verify the other end. A Source with only
// CAFile is a client that presents no certificate; without CAFile the
// system roots verify servers.
type Files struct {
	CertFile, KeyFile, CAFile string
}

// Enabled reports whether the files name a certificate (TLS is on).
func (f Files) Enabled() bool { return f.CertFile != "" }

// Any reports whether any file is set (a client may verify a server with
// only a CA).
func (f Files) Any() bool { return f.CertFile != "" || f.KeyFile != "" || f.CAFile != "" }

// flagNames are the flags that set the files, for error messages.
type flagNames struct{ cert, key, ca string }

// namesFor names the flags of prefix: "tls" is the services'
// --tls-cert-file, --tls-key-file, --tls-ca-file; any other prefix p is
// etcdctl's style --p-cert, --p-key, --p-cacert ("etcd": --etcd-cert;
// "": the CLI's --cert, --key, --cacert).
func namesFor(prefix string) flagNames {
	if prefix == "tls" {
		return flagNames{"--tls-cert-file", "--tls-key-file", "--tls-ca-file"}
	}
	p := "--"
	if prefix != "" {
		p += prefix + "-"
	}
	return flagNames{p + "cert", p + "key", p + "cacert"}
}

// material is one loaded generation of the files.
type material struct {
	cert *tls.Certificate // nil without CertFile
	pool *x509.CertPool   // nil without CAFile: the system roots
	// raw is the files' content it was parsed from.
	raw [3][]byte
}

// Source holds the current certificate and CA pool of a Files, reloaded
// when the files change. Every TLS config it returns reads the current
// material at each handshake, so a rotated certificate or CA applies to new
// connections without a restart; established connections keep theirs.
type Source struct {
	files    Files
	names    flagNames
	logger   *slog.Logger
	interval time.Duration

	cur atomic.Pointer[material]
	// failed is the content of the last reload that failed, so a bad file
	// is reported once, not at every poll.
	failed [3][]byte

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Load reads f and starts polling it (about every second) for changes.
// Every error names the flag (after flagPrefix, see namesFor) and the
// file, e.g. "--tls-cert-file /x/a.pem: no PEM CERTIFICATE block". An
// expired or not yet valid certificate is logged as a warning, not
// refused. A change that does not load (a half-written file, a key that
// does not match the new certificate) keeps the old material and logs an
// error. Close stops the polling.
func Load(f Files, flagPrefix string, logger *slog.Logger) (*Source, error) {
	return load(f, flagPrefix, logger, DefaultReloadInterval)
}

func load(f Files, flagPrefix string, logger *slog.Logger, interval time.Duration) (*Source, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Source{files: f, names: namesFor(flagPrefix), logger: logger, interval: interval,
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.checkNames(); err != nil {
		return nil, err
	}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(raw)
	if err != nil {
		return nil, err
	}
	s.warnValidity(m)
	s.cur.Store(m)
	go s.poll()
	return s, nil
}

func (s *Source) checkNames() error {
	var errs []error
	if s.files.CertFile != "" && s.files.KeyFile == "" {
		errs = append(errs, fmt.Errorf("%s %s: %s is required with it", s.names.cert, s.files.CertFile, s.names.key))
	}
	if s.files.KeyFile != "" && s.files.CertFile == "" {
		errs = append(errs, fmt.Errorf("%s %s: %s is required with it", s.names.key, s.files.KeyFile, s.names.cert))
	}
	if !s.files.Any() {
		errs = append(errs, fmt.Errorf("tlsx: no files: set %s and %s, or %s", s.names.cert, s.names.key, s.names.ca))
	}
	return errors.Join(errs...)
}

// read reads the files; an unset one reads as nil.
func (s *Source) read() ([3][]byte, error) {
	var raw [3][]byte
	var errs []error
	for i, p := range []struct{ flag, path string }{{s.names.cert, s.files.CertFile}, {s.names.key, s.files.KeyFile}, {s.names.ca, s.files.CAFile}} {
		if p.path == "" {
			continue
		}
		b, err := os.ReadFile(p.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", p.flag, p.path, unwrapPath(err)))
			continue
		}
		raw[i] = b
	}
	return raw, errors.Join(errs...)
}

// unwrapPath drops the path a *PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parse checks and parses the files' content.
func (s *Source) parse(raw [3][]byte) (*material, error) {
	m := &material{raw: raw}
	var errs []error
	if s.files.CertFile != "" {
		cert, err := parsePair(raw[0], raw[1], s.names, s.files)
		if err != nil {
			errs = append(errs, err)
		} else {
			m.cert = cert
		}
	}
	if s.files.CAFile != "" {
		pool, err := parseCA(raw[2])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", s.names.ca, s.files.CAFile, err))
		} else {
			m.pool = pool
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func parsePair(certPEM, keyPEM []byte, n flagNames, f Files) (*tls.Certificate, error) {
	var ders [][]byte
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("%s %s: no PEM CERTIFICATE block", n.cert, f.CertFile)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("%s %s: bad certificate: %w", n.cert, f.CertFile, err)
	}
	for i, d := range ders[1:] {
		if _, err := x509.ParseCertificate(d); err != nil {
			return nil, fmt.Errorf("%s %s: bad chain certificate %d: %w", n.cert, f.CertFile, i+2, err)
		}
	}
	var kb *pem.Block
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			kb = b
			break
		}
	}
	if kb == nil {
		return nil, fmt.Errorf("%s %s: no PEM PRIVATE KEY block", n.key, f.KeyFile)
	}
	// X509KeyPair parses the key and checks it matches the certificate.
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(kb))
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("%s %s: key does not match the certificate in %s %s", n.key, f.KeyFile, n.cert, f.CertFile)
		}
		return nil, fmt.Errorf("%s %s: bad key: %w", n.key, f.KeyFile, err)
	}
	pair.Leaf = leaf
	return &pair, nil
}

func parseCA(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := caPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bad CA certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM CERTIFICATE block (want the CA certificates)")
	}
	return pool, nil
}

func (s *Source) warnValidity(m *material) {
	if m.cert == nil {
		return
	}
	now := time.Now()
	switch l := m.cert.Leaf; {
	case now.After(l.NotAfter):
		s.logger.Warn("TLS certificate has expired; peers will refuse it", "flag", s.names.cert, "file", s.files.CertFile, "not_after", l.NotAfter)
	case now.Before(l.NotBefore):
		s.logger.Warn("TLS certificate is not valid yet; peers will refuse it", "flag", s.names.cert, "file", s.files.CertFile, "not_before", l.NotBefore)
	}
}

// poll reloads the files whenever their content changes.
func (s *Source) poll() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.reload()
		}
	}
}

func (s *Source) reload() {
	raw, err := s.read()
	cur := s.cur.Load()
	if err == nil && sameContent(raw, cur.raw) {
		s.failed = [3][]byte{} // back to what loaded: a later bad file is news
		return
	}
	if err == nil && sameContent(raw, s.failed) {
		return
	}
	var m *material
	if err == nil {
		m, err = s.parse(raw)
	}
	if err != nil {
		if !sameContent(raw, s.failed) {
			s.logger.Error("TLS files changed but do not load; keeping the previous certificate", "err", err)
		}
		s.failed = raw
		return
	}
	s.failed = [3][]byte{}
	s.warnValidity(m)
	s.cur.Store(m)
	attrs := []any{"cert_file", s.files.CertFile, "ca_file", s.files.CAFile}
	if m.cert != nil {
		attrs = append(attrs, "subject", m.cert.Leaf.Subject.String(), "not_after", m.cert.Leaf.NotAfter)
	}
	s.logger.Info("TLS files reloaded", attrs...)
}

func sameContent(a, b [3][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) || (a[i] == nil) != (b[i] == nil) {
			return false
		}
	}
	return true
}

// Close stops the polling. Configs already handed out keep the last
// material.
func (s *Source) Close() {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
	})
}

// Files are the files the source reads.
func (s *Source) Files() Files { return s.files }

// Certificate is the current certificate's leaf, nil without one.
func (s *Source) Certificate() *x509.Certificate {
	if m := s.cur.Load(); m.cert != nil {
		return m.cert.Leaf
	}
	return nil
}

// ClientAuth is what a server asks of its clients' certificates.
type ClientAuth int

// The client authentication modes.
const (
	// NoClientCert asks for no client certificate.
	NoClientCert ClientAuth = iota
	// VerifyIfGiven verifies a client certificate against the CA if the
	// client presents one; clients without one are let in (they may
	// authenticate otherwise, e.g. with a token).
	VerifyIfGiven
	// RequireService requires a client certificate verified by the CA
	// that is a service certificate of one of the allowed roles.
	RequireService
)

// String names the mode.
func (c ClientAuth) String() string {
	switch c {
	case NoClientCert:
		return "none"
	case VerifyIfGiven:
		return "verify-if-given"
	case RequireService:
		return "require-service"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(c))
}

// ServerTLSConfig is the config of an HTTPS (or other TLS) listener: each
// handshake gets the current certificate and CA pool (GetConfigForClient).
// It offers ALPN h2 and http/1.1.
func (s *Source) ServerTLSConfig(mode ClientAuth, allowed ...Role) *tls.Config {
	return s.serverConfig(mode, allowed, []string{"h2", "http/1.1"})
}

// ServerCredentials are the gRPC server credentials of ServerTLSConfig.
func (s *Source) ServerCredentials(mode ClientAuth, allowed ...Role) credentials.TransportCredentials {
	return credentials.NewTLS(s.serverConfig(mode, allowed, []string{"h2"}))
}

func (s *Source) serverConfig(mode ClientAuth, allowed []Role, protos []string) *tls.Config {
	allowed = append([]Role(nil), allowed...)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: protos, ClientCAs: m.pool}
			if m.cert != nil {
				c.Certificates = []tls.Certificate{*m.cert}
			}
			switch mode {
			case VerifyIfGiven:
				c.ClientAuth = tls.VerifyClientCertIfGiven
			case RequireService:
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.VerifyConnection = func(cs tls.ConnectionState) error { return checkService(cs, allowed) }
			default:
				c.ClientAuth = tls.NoClientCert
			}
			return c, nil
		},
	}
}

// ErrNotService is returned to a RequireService handshake whose client
// certificate is not a service certificate of an allowed role; use
// errors.Is.
var ErrNotService = errors.New("tlsx: client certificate is not a service certificate of an allowed role")

func checkService(cs tls.ConnectionState, allowed []Role) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return fmt.Errorf("%w: no verified client certificate", ErrNotService)
	}
	leaf := cs.VerifiedChains[0][0]
	id := CertIdentity(leaf)
	for _, r := range allowed {
		if id.Role != "" && id.Role == r {
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, r := range allowed {
		names[i] = string(r)
	}
	presented := id.String()
	if presented == "" {
		presented = "nobody"
	}
	return fmt.Errorf("%w (%s): presented %s (subject %q, URIs %v)", ErrNotService, strings.Join(names, "|"), presented, leaf.Subject.String(), leaf.URIs)
}

// ClientTLSConfig is the config of a client: it presents the current
// certificate (if any) and verifies the server against the current CA pool
// (or the system roots without a CA file) and its name, both read at each
// handshake.
func (s *Source) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if m := s.cur.Load(); m.cert != nil {
				return m.cert, nil
			}
			return &tls.Certificate{}, nil
		},
		// The CA pool changes at run time, which RootCAs cannot: the
		// verification Go would do is done in VerifyConnection instead,
		// with the pool current at the handshake.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, s.cur.Load().pool)
		},
	}
}

// verifyServer does what crypto/tls does for a client with RootCAs pool:
// verify the chain and the server name.
func verifyServer(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsx: server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	name := cs.ServerName
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// ClientCredentials are the gRPC client credentials of ClientTLSConfig.
func (s *Source) ClientCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ClientTLSConfig())
}
