package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
)

// The secure peer is veltrix-rf1 with what a production deployment turns
// on (issue #19): TLS on every listener, mutual TLS from the router to the
// storage node, and --auth on the router. Its bench client holds a real
// API key, issued through AuthService by the dev PKI's admin certificate,
// of a principal with write on the bench tables only: every call pays the
// TLS record layer, the bearer token check and the per-table permission
// check, as an application's would.

// Principals the secure peer creates.
const (
	benchPrincipal      = "bench"       // write on the bench tables: the workloads
	benchAdminPrincipal = "bench-admin" // admin on "*": creates the DynamoDB table
)

// secureAccess is what a client of a secure cluster needs.
type secureAccess struct {
	// adminTLS presents the dev PKI's admin certificate (its principal is
	// in --auth-admins): it sets the cluster up.
	adminTLS *tlsx.Source
	// caOnly verifies the router and presents no certificate: the token
	// is the only credential.
	caOnly *tls.Config
	// token is the bench principal's gRPC bearer token; keyID and secret
	// are the same key as an AWS access key (SigV4).
	token, keyID, secret string
	// adminKeyID and adminSecret are bench-admin's key (SigV4).
	adminKeyID, adminSecret string
}

// startSecureVeltrix starts a Secure cluster and connects a client that
// authenticates with an issued key.
func startSecureVeltrix(ctx context.Context, o ClusterOptions) (*veltrixDriver, error) {
	o.Secure = true
	c, err := StartCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := newSecureVeltrixDriver(ctx, c)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	d.owned = true
	return d, nil
}

func newSecureVeltrixDriver(ctx context.Context, c *Cluster) (_ *veltrixDriver, err error) {
	sec := &secureAccess{}
	if sec.adminTLS, err = tlsx.Load(c.PKI.Admin, "", c.Opts.Logger); err != nil {
		return nil, fmt.Errorf("bench: admin certificate: %w", err)
	}
	var admin *client.Client
	defer func() {
		if err != nil {
			if admin != nil {
				err = errors.Join(err, admin.Close())
			}
			sec.adminTLS.Close()
		}
	}()
	caPEM, err := os.ReadFile(c.PKI.CA)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("bench: %s: no CA certificate", c.PKI.CA)
	}
	sec.caOnly = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	addrs := []string{c.Router.Addr()}
	if admin, err = client.New(ctx, addrs, client.WithTLS(sec.adminTLS.ClientTLSConfig()), client.WithDefaultTimeout(30*time.Second)); err != nil {
		return nil, err
	}
	if _, err := admin.CreateTable(ctx, benchTable); err != nil {
		return nil, err
	}
	ac := authv1.NewAuthServiceClient(admin.Conn())
	write := authv1.Permission_PERMISSION_WRITE
	if _, err := ac.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: benchPrincipal, Grants: []*authv1.Grant{
		{Table: benchTable, Permission: write}, {Table: dynamoTable, Permission: write},
	}}); err != nil {
		return nil, fmt.Errorf("bench: SetGrants %s: %w", benchPrincipal, err)
	}
	if _, err := ac.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: benchAdminPrincipal, Grants: []*authv1.Grant{
		{Table: "*", Permission: authv1.Permission_PERMISSION_ADMIN},
	}}); err != nil {
		return nil, fmt.Errorf("bench: SetGrants %s: %w", benchAdminPrincipal, err)
	}
	k, err := ac.CreateKey(ctx, &authv1.CreateKeyRequest{Principal: benchPrincipal})
	if err != nil {
		return nil, fmt.Errorf("bench: CreateKey %s: %w", benchPrincipal, err)
	}
	sec.token, sec.keyID, sec.secret = k.GetToken(), k.GetKey().GetId(), k.GetSecret()
	ak, err := ac.CreateKey(ctx, &authv1.CreateKeyRequest{Principal: benchAdminPrincipal})
	if err != nil {
		return nil, fmt.Errorf("bench: CreateKey %s: %w", benchAdminPrincipal, err)
	}
	sec.adminKeyID, sec.adminSecret = ak.GetKey().GetId(), ak.GetSecret()

	cl, err := client.New(ctx, addrs, client.WithTLS(sec.caOnly), client.WithBearerToken(sec.token), client.WithDefaultTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	d := &veltrixDriver{cluster: c, c: cl, admin: admin, sec: sec}
	if err := d.waitWrites(ctx); err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	return d, nil
}
