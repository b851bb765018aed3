package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The dev stack's authentication files, in its data directory.
const (
	// devSealKeyName is the routers' --auth-key-file.
	devSealKeyName = "auth.key"
	// devCredentialsName holds the API key of principal devPrincipal.
	devCredentialsName = "credentials"
	// devPrincipal is the principal of the dev stack's API key: admin on
	// every table.
	devPrincipal = "dev"
)

// ensureSealKey makes sure path holds a seal key (64 hex characters, mode
// 0600), writing a new random one when the file does not exist. created
// says it did: keys sealed with an earlier one no longer work for SigV4.
// A file that exists but is not a seal key is an error, never replaced.
func ensureSealKey(path string) (created bool, err error) {
	if _, err := auth.LoadSealKey(path); err == nil {
		return false, nil
	} else if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		return false, fmt.Errorf("%w (delete it to have a new one generated; keys issued before then stop working with the DynamoDB endpoint)", err)
	}
	k := make([]byte, auth.SealKeySize)
	if _, err := rand.Read(k); err != nil {
		return false, fmt.Errorf("dev auth: seal key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("dev auth: write seal key: %w", err)
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(k)); err != nil {
		f.Close()
		return false, fmt.Errorf("dev auth: write seal key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("dev auth: write seal key %s: %w", path, err)
	}
	return true, nil
}

// devCredentials is the dev stack's API key. Its file is an AWS shared
// credentials file (profile "default") with the bearer token as an extra
// entry, so AWS_SHARED_CREDENTIALS_FILE can point at it.
type devCredentials struct {
	ID, Secret, Token string
}

const (
	credKeyID  = "aws_access_key_id"
	credSecret = "aws_secret_access_key"
	credToken  = "veltrix_token"
)

// readCredentials reads a credentials file; a missing file is
// os.ErrNotExist (use errors.Is).
func readCredentials(path string) (devCredentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return devCredentials{}, err
	}
	defer f.Close()
	var c devCredentials
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case credKeyID:
			c.ID = strings.TrimSpace(v)
		case credSecret:
			c.Secret = strings.TrimSpace(v)
		case credToken:
			c.Token = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return devCredentials{}, fmt.Errorf("dev auth: read %s: %w", path, err)
	}
	if !auth.ValidKeyID(c.ID) || c.Secret == "" || c.Token != c.ID+"."+c.Secret {
		return devCredentials{}, fmt.Errorf("dev auth: %s: want %s, %s and %s = <id>.<secret>", path, credKeyID, credSecret, credToken)
	}
	return c, nil
}

// writeCredentials writes c to path (mode 0600) through a rename.
func writeCredentials(path string, c devCredentials) error {
	body := fmt.Sprintf(`# veltrix dev: the API key of principal %q (admin on every table).
# An AWS shared credentials file (AWS_SHARED_CREDENTIALS_FILE); %s is the
# gRPC bearer token (VELTRIX_TOKEN, or "authorization: Bearer <token>").
[default]
%s = %s
%s = %s
%s = %s
`, devPrincipal, credToken, credKeyID, c.ID, credSecret, c.Secret, credToken, c.Token)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+devCredentialsName+"-*")
	if err != nil {
		return fmt.Errorf("dev auth: write credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return fmt.Errorf("dev auth: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dev auth: write %s: %w", tmp.Name(), err)
	}
	// CreateTemp makes the file 0600.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dev auth: write credentials: %w", err)
	}
	return nil
}

// ensureCredentials returns the dev stack's API key: the one in dir's
// credentials file while the router still accepts its token (and the
// seal key that sealed it is the one in use), else a new key for
// principal devPrincipal (admin on "*"), created through AuthService with
// the admin certificate and written to the file. reused says which.
func ensureCredentials(ctx context.Context, dir string, st *devStack, sealCreated bool, logger *slog.Logger) (c devCredentials, reused bool, err error) {
	path := filepath.Join(dir, devCredentialsName)
	old, rerr := readCredentials(path)
	switch {
	case errors.Is(rerr, os.ErrNotExist):
	case rerr != nil:
		logger.Warn("dev auth: credentials file unreadable; issuing a new key", "err", rerr)
	default:
		ok, err := st.tokenValid(ctx, old.Token, logger)
		if err != nil {
			return devCredentials{}, false, err
		}
		if ok && !sealCreated {
			return old, true, nil
		}
	}

	opts, closeTLS, err := st.dialOptions(logger)
	if err != nil {
		return devCredentials{}, false, err
	}
	defer closeTLS()
	cc, err := grpcx.Dial(st.Routers[0].Addr(), opts...)
	if err != nil {
		return devCredentials{}, false, err
	}
	defer cc.Close()
	ac := authv1.NewAuthServiceClient(cc)
	if rerr == nil {
		// A key sealed with a seal key that is gone (or already unknown):
		// drop it rather than leave a key that half works.
		if _, err := ac.RevokeKey(ctx, &authv1.RevokeKeyRequest{Id: old.ID}); err != nil && status.Code(err) != codes.NotFound {
			return devCredentials{}, false, explain(err, "revoke the old dev key "+old.ID)
		}
	}
	if _, err := ac.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: devPrincipal,
		Grants: []*authv1.Grant{{Table: auth.AllTables, Permission: authv1.Permission_PERMISSION_ADMIN}}}); err != nil {
		return devCredentials{}, false, explain(err, "set principal "+devPrincipal)
	}
	resp, err := ac.CreateKey(ctx, &authv1.CreateKeyRequest{Principal: devPrincipal})
	if err != nil {
		return devCredentials{}, false, explain(err, "create the dev key")
	}
	c = devCredentials{ID: resp.GetKey().GetId(), Secret: resp.GetSecret(), Token: resp.GetToken()}
	if err := writeCredentials(path, c); err != nil {
		return devCredentials{}, false, err
	}
	return c, false, nil
}

// tokenValid asks the router whether it accepts token: ListTables needs
// only an authenticated caller.
func (s *devStack) tokenValid(ctx context.Context, token string, logger *slog.Logger) (bool, error) {
	src, err := tlsx.Load(tlsx.Files{CAFile: s.pki.CA}, "", logger)
	if err != nil {
		return false, err
	}
	defer src.Close()
	cc, err := grpcx.Dial(s.Routers[0].Addr(), grpc.WithTransportCredentials(src.ClientCredentials()),
		grpc.WithPerRPCCredentials(client.BearerToken(token)))
	if err != nil {
		return false, err
	}
	defer cc.Close()
	_, err = kvv1.NewAdminServiceClient(cc).ListTables(ctx, &kvv1.ListTablesRequest{})
	switch status.Code(err) {
	case codes.OK:
		return true, nil
	case codes.Unauthenticated:
		return false, nil
	}
	return false, explain(err, "check the dev key with the router")
}
