package e2e

// End-to-end tests of the security contract (issue #19, /work/sec-contract.md
// in the review notes; docs/design.md "Security"): mutual TLS between the
// services, TLS and bearer tokens for gRPC clients, SigV4 with issued keys
// on the DynamoDB endpoint, certificate rotation in place, and a clear
// refusal to start on a bad certificate file. Real processes, started by
// e2e/framework with Options.TLS / Options.Auth.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// secRegion is the region the tests sign DynamoDB requests for.
const secRegion = "us-east-1"

// secConn dials addr with transport credentials creds (and per-RPC
// credentials), closed when the test ends. The dial itself does not
// connect: errors show on the first call.
func secConn(t *testing.T, addr string, creds grpccreds.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// healthOf asks a process's gRPC health service for the overall status.
func healthOf(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", resp.GetStatus())
	}
	return err
}

// tokenClient is a pkg/client Client of c's routers over TLS (trusting the
// cluster's CA, no client certificate) that sends token as a bearer token
// ("" sends none). No retries: a denial must show as it is.
func tokenClient(t *testing.T, c *framework.Cluster, token string) *client.Client {
	t.Helper()
	dial := []grpc.DialOption{grpc.WithTransportCredentials(grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(c.PKI.CA), framework.CertFiles{})))}
	if token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(client.BearerToken(token)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.New(ctx, c.RouterAddrs(), client.WithMaxRetries(0), client.WithDialOptions(dial...))
	if err != nil {
		t.Fatalf("client with token: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// adminAuth is the AuthService of the first router, called with the admin
// principal's client certificate (the --auth-admins bootstrap superuser).
func adminAuth(t *testing.T, c *framework.Cluster) authv1.AuthServiceClient {
	t.Helper()
	creds := grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(c.PKI.CA), c.PKI.Admin))
	return authv1.NewAuthServiceClient(secConn(t, c.RouterAddrs()[0], creds))
}

// issueKey creates principal with grants (replacing its grants) and a key
// of it, and returns the key.
func issueKey(t *testing.T, auth authv1.AuthServiceClient, principal string, grants ...*authv1.Grant) *authv1.CreateKeyResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := auth.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: principal, Grants: grants}); err != nil {
		t.Fatalf("SetGrants %s: %v", principal, err)
	}
	k, err := auth.CreateKey(ctx, &authv1.CreateKeyRequest{Principal: principal})
	if err != nil {
		t.Fatalf("CreateKey %s: %v", principal, err)
	}
	if k.GetKey().GetId() == "" || k.GetSecret() == "" || k.GetToken() != k.GetKey().GetId()+"."+k.GetSecret() {
		t.Fatalf("CreateKey %s = id %q, secret of %d chars, token %q; want token <id>.<secret>", principal, k.GetKey().GetId(), len(k.GetSecret()), k.GetToken())
	}
	return k
}

func grant(table string, p authv1.Permission) *authv1.Grant {
	return &authv1.Grant{Table: table, Permission: p}
}

func secWantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v (%s); want %s", what, err, got, want)
	}
}

// TestBinSecurity runs one cluster with TLS and auth on (3 storage nodes,
// a router with the DynamoDB endpoint over HTTPS) and checks who gets in:
// transport (plaintext, wrong CA, a storage node's service-only mutual
// TLS), gRPC authorization with keys issued through AuthService,
// DynamoDB SigV4 with the same keys, and the tools a person uses (AWS CLI,
// grpcurl).
func TestBinSecurity(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, Auth: true, DynamoDB: true})
	pki := c.PKI
	router := c.RouterAddrs()[0]
	other := framework.NewCA(t, t.TempDir(), "other-ca")
	otherDir := t.TempDir()

	t.Run("Transport", func(t *testing.T) {
		// A plaintext client: the router speaks TLS only.
		err := healthOf(secConn(t, router, insecure.NewCredentials()))
		secWantCode(t, "plaintext health check of a secured router", err, codes.Unavailable)

		// A client that trusts another CA does not trust the router.
		err = healthOf(secConn(t, router, grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(other), framework.CertFiles{}))))
		secWantCode(t, "client trusting another CA", err, codes.Unavailable)
		if err != nil && !strings.Contains(err.Error(), "certificate") {
			t.Errorf("client trusting another CA: %v; want a certificate verification error", err)
		}

		// A client certificate of another CA is refused even where client
		// certificates are optional (router: verify if given).
		foreign := other.PrincipalCert(t, otherDir, framework.AdminPrincipal)
		err = healthOf(secConn(t, router, grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(pki.CA), foreign))))
		secWantCode(t, "router, client certificate of another CA", err, codes.Unavailable)

		// The right CA and no client certificate: the TLS handshake
		// succeeds, and health is open.
		if err := healthOf(secConn(t, router, grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(pki.CA), framework.CertFiles{})))); err != nil {
			t.Errorf("health check over TLS without a client certificate: %v; want SERVING (health is open)", err)
		}
	})

	t.Run("StorageMutualTLS", func(t *testing.T) {
		node := c.Nodes[0].Addr()
		cases := []struct {
			name string
			cert framework.CertFiles
			ok   bool
		}{
			{"router service certificate", pki.Services[tlsx.RoleRouter], true},
			{"migrator service certificate", pki.Services[tlsx.RoleMigrator], true},
			{"admin principal certificate", pki.Admin, false},
			{"certificate naming no service", pki.CA.NonServiceCert(t, t.TempDir()), false},
			{"router certificate of another CA", other.ServiceCert(t, otherDir, tlsx.RoleRouter), false},
			{"no client certificate", framework.CertFiles{}, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				cc := secConn(t, node, grpccreds.NewTLS(framework.ClientTLS(t, framework.Pool(pki.CA), tc.cert)))
				err := healthOf(cc)
				if tc.ok && err != nil {
					t.Errorf("storage node refused the %s: %v", tc.name, err)
				}
				if !tc.ok && err == nil {
					t.Errorf("storage node accepted the %s; want the handshake refused", tc.name)
				}
			})
		}
	})

	// Tables of the authorization tests, made by the admin (client cert).
	admin := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tb := range []string{"sec_items", "sec_other"} {
		if _, err := admin.CreateTable(ctx, tb); err != nil {
			t.Fatalf("admin CreateTable %s: %v", tb, err)
		}
	}
	if _, err := admin.Put(ctx, "sec_items", []byte("k1"), nil, []byte("v1")); err != nil {
		t.Fatalf("admin Put: %v", err)
	}
	auth := adminAuth(t, c)

	t.Run("GRPCAuth", func(t *testing.T) {
		reader := issueKey(t, auth, "sec-reader", grant("sec_items", authv1.Permission_PERMISSION_READ))
		rc := tokenClient(t, c, reader.GetToken())
		it, found, err := rc.Get(ctx, "sec_items", []byte("k1"), nil)
		if err != nil || !found || string(it.Value) != "v1" {
			t.Errorf("read-only key Get k1 = %q, %v, %v; want v1", it.Value, found, err)
		}
		_, err = rc.Put(ctx, "sec_items", []byte("k1"), nil, []byte("v2"))
		secWantCode(t, "read-only key Put", err, codes.PermissionDenied)
		if err != nil && !strings.Contains(err.Error(), "sec-reader") {
			t.Errorf("read-only key Put: %v; want the message to name the principal sec-reader", err)
		}
		if it, _, err := admin.Get(ctx, "sec_items", []byte("k1"), nil); err != nil || string(it.Value) != "v1" {
			t.Errorf("after the refused Put, k1 = %q, %v; want v1 unchanged", it.Value, err)
		}
		_, _, err = rc.Get(ctx, "sec_other", []byte("k1"), nil)
		secWantCode(t, "read-only key Get on a table it has no grant on", err, codes.PermissionDenied)

		_, _, err = tokenClient(t, c, "").Get(ctx, "sec_items", []byte("k1"), nil)
		secWantCode(t, "Get without credentials", err, codes.Unauthenticated)
		_, _, err = tokenClient(t, c, reader.GetKey().GetId()+".not-the-secret").Get(ctx, "sec_items", []byte("k1"), nil)
		secWantCode(t, "Get with a wrong secret", err, codes.Unauthenticated)

		// Not an admin: the AuthService is cluster admin only.
		_, err = authv1.NewAuthServiceClient(rc.Conn()).ListPrincipals(ctx, &authv1.ListPrincipalsRequest{})
		secWantCode(t, "read-only key ListPrincipals", err, codes.PermissionDenied)

		// Revocation reaches the router within a second or so.
		doomed := issueKey(t, auth, "sec-doomed", grant("sec_items", authv1.Permission_PERMISSION_READ))
		dc := tokenClient(t, c, doomed.GetToken())
		if _, _, err := dc.Get(ctx, "sec_items", []byte("k1"), nil); err != nil {
			t.Fatalf("Get with a fresh key: %v", err)
		}
		if _, err := auth.RevokeKey(ctx, &authv1.RevokeKeyRequest{Id: doomed.GetKey().GetId()}); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
		revoked := time.Now()
		for {
			_, _, err := dc.Get(ctx, "sec_items", []byte("k1"), nil)
			if status.Code(err) == codes.Unauthenticated {
				t.Logf("revoked key refused after %s", time.Since(revoked).Round(time.Millisecond))
				break
			}
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("revoked key still answered after 2s: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("DynamoDBSigV4", func(t *testing.T) {
		endpoint := c.DynamoDBEndpoints()[0]
		if !strings.HasPrefix(endpoint, "https://") {
			t.Fatalf("DynamoDB endpoint %s; want https", endpoint)
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: framework.ClientTLS(t, framework.Pool(pki.CA), framework.CertFiles{}),
		}}
		ddb := func(id, secret string) *dynamodb.Client {
			return dynamodb.New(dynamodb.Options{
				Region:           secRegion,
				BaseEndpoint:     aws.String(endpoint),
				Credentials:      credentials.NewStaticCredentialsProvider(id, secret, ""),
				RetryMaxAttempts: 1,
				HTTPClient:       hc,
			})
		}
		owner := issueKey(t, auth, "sec-ddb-owner", grant("*", authv1.Permission_PERMISSION_ADMIN))
		oc := ddb(owner.GetKey().GetId(), owner.GetSecret())
		createDDBTable(t, oc, "sec_ddb", hashKey("pk", dtypes.ScalarAttributeTypeS))
		item := map[string]dtypes.AttributeValue{"pk": avS("a"), "v": avS("one")}
		if _, err := oc.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("sec_ddb"), Item: item}); err != nil {
			t.Fatalf("owner PutItem: %v", err)
		}

		reader := issueKey(t, auth, "sec-ddb-reader", grant("sec_ddb", authv1.Permission_PERMISSION_READ))
		rc := ddb(reader.GetKey().GetId(), reader.GetSecret())
		key := map[string]dtypes.AttributeValue{"pk": avS("a")}
		out, err := rc.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("sec_ddb"), Key: key})
		if err != nil {
			t.Fatalf("read-only key GetItem: %v", err)
		}
		if v, _ := out.Item["v"].(*dtypes.AttributeValueMemberS); v == nil || v.Value != "one" {
			t.Errorf("read-only key GetItem = %v; want v=one", out.Item)
		}
		_, err = rc.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("sec_ddb"),
			Item: map[string]dtypes.AttributeValue{"pk": avS("a"), "v": avS("two")}})
		wantErr(t, "read-only key PutItem", err, "AccessDeniedException")
		out, err = oc.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("sec_ddb"), Key: key, ConsistentRead: aws.Bool(true)})
		if v, _ := out.Item["v"].(*dtypes.AttributeValueMemberS); err != nil || v == nil || v.Value != "one" {
			t.Errorf("after the refused PutItem, item = %v, %v; want v=one unchanged", out.Item, err)
		}

		_, err = ddb("VXAAAAAAAAAAAAAAAAAA", reader.GetSecret()).GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("sec_ddb"), Key: key})
		wantErr(t, "GetItem with an unknown access key id", err, "UnrecognizedClientException")
		_, err = ddb(reader.GetKey().GetId(), strings.Repeat("x", len(reader.GetSecret()))).GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("sec_ddb"), Key: key})
		wantErr(t, "GetItem with a wrong secret", err, "InvalidSignatureException")

		// A request signed 16 minutes ago: outside DynamoDB's 15 minutes.
		body := []byte(`{"TableName":"sec_ddb","Key":{"pk":{"S":"a"}}}`)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
		sum := sha256.Sum256(body)
		creds := aws.Credentials{AccessKeyID: reader.GetKey().GetId(), SecretAccessKey: reader.GetSecret()}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "dynamodb", secRegion, time.Now().Add(-16*time.Minute)); err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("stale-signed GetItem: %v", err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(rb), "InvalidSignatureException") || !strings.Contains(string(rb), "Signature expired") {
			t.Errorf("GetItem signed 16 minutes ago: %d %s; want 400 InvalidSignatureException \"Signature expired: ...\"", resp.StatusCode, rb)
		}

		t.Run("AWSCLI", func(t *testing.T) {
			awsBin, err := exec.LookPath("aws")
			if err != nil {
				if ciRun() {
					t.Fatalf("CI=%s and no aws CLI on PATH: `make python-deps` installs it (Debian awscli)", os.Getenv("CI"))
				}
				t.Skip("no aws CLI on PATH: `make python-deps` installs it (Debian awscli); in CI this is a failure")
			}
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(caFile, pki.CA.CertPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, awsBin, "dynamodb", "list-tables", "--endpoint-url", endpoint, "--ca-bundle", caFile, "--output", "json")
			// Only the issued key: no profile, config or other AWS_* of the
			// environment running the tests.
			env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_") })
			cmd.Env = append(env, "AWS_ACCESS_KEY_ID="+owner.GetKey().GetId(), "AWS_SECRET_ACCESS_KEY="+owner.GetSecret(),
				"AWS_DEFAULT_REGION="+secRegion, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "sec_ddb") {
				t.Errorf("aws dynamodb list-tables over HTTPS with an issued key: %v\n%s", err, out)
			}
		})
	})

	t.Run("Grpcurl", func(t *testing.T) {
		grpcurl := framework.Grpcurl(t)
		ops := issueKey(t, auth, "sec-ops", grant("*", authv1.Permission_PERMISSION_READ))
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"admin client certificate", []string{"-cacert", pki.CA.CertFile, "-cert", pki.Admin.CertFile, "-key", pki.Admin.KeyFile}},
			{"bearer token", []string{"-cacert", pki.CA.CertFile, "-H", "authorization: Bearer " + ops.GetToken()}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append(append([]string{"-max-time", "20"}, tc.args...), router, "veltrix.kv.v1.AdminService/ListTables")
				res := runBin(t, 30*time.Second, "", grpcurl, args...)
				if res.code != 0 || !strings.Contains(res.stdout, "sec_items") {
					t.Errorf("grpcurl ListTables with %s: exit %d\n%s%s", tc.name, res.code, res.stdout, res.stderr)
				}
			})
		}
		res := runBin(t, 30*time.Second, "", grpcurl, "-max-time", "20", "-cacert", pki.CA.CertFile, router, "veltrix.kv.v1.AdminService/ListTables")
		if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "Unauthenticated") {
			t.Errorf("grpcurl ListTables without credentials: exit %d\n%s%s; want Unauthenticated", res.code, res.stdout, res.stderr)
		}
	})
}

// TestBinSecurityRotation rotates every certificate of a running cluster
// to a new CA the way cert-manager does, in place, while a client reads
// without pause: first the CA bundle becomes old+new, then each service's
// certificate and key are overwritten. New connections must get the new
// certificates and no read may fail.
func TestBinSecurityRotation(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 2, RF: 2, TLS: true})
	pki := c.PKI
	newCA := framework.NewCA(t, t.TempDir(), "new-ca")
	both := framework.Pool(pki.CA, newCA)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	admin := c.Client(t)
	keys := []string{"r1", "r2", "r3"}
	if _, err := admin.CreateTable(ctx, "rot_items"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := admin.Put(ctx, "rot_items", []byte(k), nil, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}

	// The reading client trusts both CAs from the start, as a client
	// would once the new CA is distributed; its certificate stays the old
	// CA's, which the services keep trusting through the bundle.
	ctxDial, cancelDial := context.WithTimeout(ctx, 20*time.Second)
	reader, err := client.New(ctxDial, c.RouterAddrs(), client.WithDialOptions(
		grpc.WithTransportCredentials(grpccreds.NewTLS(framework.ClientTLS(t, both, pki.Admin)))))
	cancelDial()
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var (
		reads, failures atomic.Int64
		firstFailure    atomic.Value
		stop            = make(chan struct{})
		wg              sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := keys[i%len(keys)]
			it, found, err := reader.Get(ctx, "rot_items", []byte(k), nil)
			reads.Add(1)
			if err == nil && (!found || string(it.Value) != "v-"+k) {
				err = fmt.Errorf("got %q found=%v", it.Value, found)
			}
			if err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, fmt.Sprintf("Get %s: %v", k, err))
			}
		}
	}()

	// Trust first, everywhere; then the new certificates.
	bundle := append(append([]byte(nil), pki.CA.CertPEM...), newCA.CertPEM...)
	framework.WriteFileAtomic(t, pki.CAFile, bundle)
	time.Sleep(2500 * time.Millisecond) // the services poll their files about every second
	fresh := map[tlsx.Role]framework.CertFiles{}
	for _, r := range []tlsx.Role{tlsx.RoleRouter, tlsx.RoleStorage, tlsx.RoleMigrator} {
		fresh[r] = newCA.ServiceCert(t, filepath.Dir(pki.Services[r].CertFile), r)
	}

	served := func(addr string, cert framework.CertFiles) (*x509.Certificate, error) {
		conf := framework.ClientTLS(t, both, cert)
		conf.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	check := func(name, addr string, want *x509.Certificate, cert framework.CertFiles) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := served(addr, cert)
			if err == nil && got.SerialNumber.Cmp(want.SerialNumber) == 0 {
				return
			}
			if time.Now().After(deadline) {
				serial := "none"
				if got != nil {
					serial = got.SerialNumber.String()
				}
				t.Errorf("%s at %s still serves serial %s (err %v) 10s after rotation; want the new certificate %s", name, addr, serial, err, want.SerialNumber)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, r := range c.Routers {
		check(r.Name, r.Addr(), fresh[tlsx.RoleRouter].Cert, pki.Admin)
	}
	for _, n := range c.Nodes {
		check(n.Name, n.Addr(), fresh[tlsx.RoleStorage].Cert, fresh[tlsx.RoleRouter])
	}

	// A new client connection works end to end after the rotation, and
	// the router's new connections to the storage nodes too (a write
	// goes to every replica).
	after := c.Client(t, client.WithDialOptions(grpc.WithTransportCredentials(grpccreds.NewTLS(framework.ClientTLS(t, both, pki.Admin)))))
	if _, err := after.Put(ctx, "rot_items", []byte("r4"), nil, []byte("v-r4"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL)); err != nil {
		t.Errorf("Put with consistency ALL on a new connection after rotation: %v", err)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("rotation: %d reads during the rotation, %d failed", reads.Load(), failures.Load())
	if reads.Load() == 0 {
		t.Error("the client loop read nothing")
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d reads failed during the rotation; first: %v", n, reads.Load(), firstFailure.Load())
	}

	// A restarted storage node starts from the new files only: the
	// router's new connection to it verifies the new certificates both
	// ways, and a write to every replica goes through.
	c.Nodes[0].Stop(t)
	c.Nodes[0].Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := after.Put(ctx, "rot_items", []byte("r5"), nil, []byte("v-r5"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Put with consistency ALL after restarting %s on the rotated certificates: %v", c.Nodes[0].Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, err := served(c.Nodes[0].Addr(), fresh[tlsx.RoleRouter]); err != nil || got.SerialNumber.Cmp(fresh[tlsx.RoleStorage].Cert.SerialNumber) != 0 {
		t.Errorf("restarted %s serves %v (%v); want the new storage certificate", c.Nodes[0].Name, got, err)
	}
}

// TestBinSecurityBadCertFile starts each service with a malformed
// --tls-cert-file: it must exit non-zero, before serving, with a message
// naming the file.
func TestBinSecurityBadCertFile(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	dir := t.TempDir()
	pki := framework.NewPKI(t, filepath.Join(dir, "pki"))
	bad := framework.WriteMalformed(t, dir)
	// No etcd listens here: a service must check its files before dialling.
	etcd := "http://127.0.0.1:1"
	common := func(role tlsx.Role, certFile string) []string {
		return []string{"--cluster", "e2e", "--etcd-endpoints", etcd, "--listen-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--tls-cert-file", certFile, "--tls-key-file", pki.Services[role].KeyFile, "--tls-ca-file", pki.CAFile}
	}
	cases := []struct {
		name, bin string
		args      []string
		file      string
	}{
		{"router not PEM", bins.Router, append(common(tlsx.RoleRouter, bad.NotPEM), "--router-id", "r1"), bad.NotPEM},
		{"router bad DER", bins.Router, append(common(tlsx.RoleRouter, bad.BadDER), "--router-id", "r1"), bad.BadDER},
		{"router missing file", bins.Router, append(common(tlsx.RoleRouter, bad.Missing), "--router-id", "r1"), bad.Missing},
		{"storage empty file", bins.Storage, append(common(tlsx.RoleStorage, bad.Empty), "--node-id", "n1", "--data-dir", filepath.Join(dir, "data")), bad.Empty},
		{"migrator not PEM", bins.Path(t, framework.Migrator), append(common(tlsx.RoleMigrator, bad.NotPEM), "--migrator-id", "m1", "--router-endpoints", "127.0.0.1:1"), bad.NotPEM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runBin(t, 30*time.Second, dir, tc.bin, tc.args...)
			if res.code == 0 {
				t.Fatalf("%s with --tls-cert-file %s exited 0; want a non-zero exit\n%s%s", filepath.Base(tc.bin), tc.file, res.stdout, res.stderr)
			}
			out := res.stdout + res.stderr
			if !strings.Contains(out, tc.file) || !strings.Contains(out, "--tls-cert-file") {
				t.Errorf("%s exited %d but its message does not name --tls-cert-file %s:\n%s", filepath.Base(tc.bin), res.code, tc.file, out)
			}
		})
	}
}

// TestBinNodeClientSecured drives a secured router from Node.js
// (e2e/node/client.js with @grpc/grpc-js): TLS trusting the cluster's CA
// and an issued key's bearer token, no client certificate. The key may
// write its one table; the item the Go client wrote is read back.
func TestBinNodeClientSecured(t *testing.T) {
	binTest(t)
	nodeBin, nodeDir := nodeClient(t)
	c := framework.Start(t, framework.Options{Nodes: 2, RF: 2, Auth: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Client(t)
	if _, err := admin.CreateTable(ctx, "node_sec"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "node_sec", []byte("from-go"), []byte("sk-1"), []byte("go-value")); err != nil {
		t.Fatal(err)
	}
	key := issueKey(t, adminAuth(t, c), "node-app", grant("node_sec", authv1.Permission_PERMISSION_WRITE))
	args := []string{"client.js", "--addr", c.RouterAddrs()[0], "--proto-dir", filepath.Join(framework.RepoRoot(t), "proto"),
		"--table", "node_sec", "--pk", "from-node", "--go-pk", "from-go", "--go-sk", "sk-1", "--cacert", c.PKI.CA.CertFile}
	res := runBin(t, 60*time.Second, nodeDir, nodeBin, append(args, "--token", key.GetToken())...)
	if res.code != 0 {
		t.Fatalf("node client.js over TLS with a token: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{`"sk":"a"`, `"sk":"b"`, `"sk":"c"`, `"go_item":{"found":true,"value_b64":"` + b64("go-value") + `"`} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("node client.js output lacks %s:\n%s", want, res.stdout)
		}
	}
	// Without the token the same client is refused.
	res = runBin(t, 60*time.Second, nodeDir, nodeBin, args...)
	if res.code == 0 || !strings.Contains(res.stderr, "UNAUTHENTICATED") && !strings.Contains(res.stderr, "16 ") {
		t.Errorf("node client.js without a token: exit %d, stderr %s; want UNAUTHENTICATED", res.code, res.stderr)
	}
}
