package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/veltrixdb/veltrix/pkg/client"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
)

func init() {
	register(command{name: "auth", build: authCmd})
}

const authLong = `Principals, their per-table permissions and their API keys (AuthService on
the routers; every command needs admin on "*"). A grant is TABLE=LEVEL: a
table name or "*" (every table), and read, write or admin; each level includes
the ones below.

  veltrix auth principal set alice --grant orders=write --grant '*=read'
  veltrix auth key create --principal alice
  export VELTRIX_TOKEN=<the token printed>

A key's secret is printed once, by 'key create'. The key is a gRPC bearer
token and an AWS access key pair for the DynamoDB endpoint.`

func authCmd(c *conn) *cobra.Command {
	g := group("auth", "manage principals, permissions and API keys",
		group("principal", "set, list or delete principals and their permissions",
			authPrincipalSetCmd(c), authPrincipalListCmd(c), authPrincipalDeleteCmd(c)),
		group("key", "create, list or revoke API keys",
			authKeyCreateCmd(c), authKeyListCmd(c), authKeyRevokeCmd(c)),
	)
	g.Long = authLong
	return g
}

// parseGrants parses --grant TABLE=LEVEL values.
func parseGrants(vals []string) ([]*authv1.Grant, error) {
	var out []*authv1.Grant
	for _, v := range vals {
		tbl, lvl, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(tbl) == "" {
			return nil, usageErr("--grant %q: want TABLE=LEVEL, e.g. orders=read or '*=admin'", v)
		}
		var p authv1.Permission
		switch strings.ToLower(strings.TrimSpace(lvl)) {
		case "read":
			p = authv1.Permission_PERMISSION_READ
		case "write":
			p = authv1.Permission_PERMISSION_WRITE
		case "admin":
			p = authv1.Permission_PERMISSION_ADMIN
		default:
			return nil, usageErr("--grant %q: unknown level %q: want read, write or admin", v, lvl)
		}
		out = append(out, &authv1.Grant{Table: strings.TrimSpace(tbl), Permission: p})
	}
	return out, nil
}

func permission(p authv1.Permission) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "PERMISSION_"))
}

func grantsText(gs []*authv1.Grant) string {
	if len(gs) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(gs))
	for _, g := range gs {
		parts = append(parts, g.GetTable()+"="+permission(g.GetPermission()))
	}
	return strings.Join(parts, ",")
}

// withAuth runs fn with an AuthService client of the routers.
func (c *conn) withAuth(cmd *cobra.Command, fn func(ctx context.Context, ac authv1.AuthServiceClient) error) error {
	return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
		return fn(ctx, authv1.NewAuthServiceClient(cl.Conn()))
	})
}

func authPrincipalSetCmd(c *conn) *cobra.Command {
	var grants []string
	cmd := leaf("set NAME [--grant TABLE=LEVEL ...]", "create a principal or replace its permissions", 1, 1, func(cmd *cobra.Command, pos []string) error {
		gs, err := parseGrants(grants)
		if err != nil {
			return err
		}
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			resp, err := ac.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: pos[0], Grants: gs})
			if err != nil {
				return explain(err, "set principal "+pos[0])
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				_, err := fmt.Fprintf(w, "principal %s: %s\n", resp.GetPrincipal().GetName(), grantsText(resp.GetPrincipal().GetGrants()))
				return err
			})
		})
	})
	cmd.Flags().StringArrayVar(&grants, "grant", nil, "TABLE=LEVEL (read, write or admin; TABLE may be '*'); repeat for several; none: no permissions")
	return cmd
}

func authPrincipalListCmd(c *conn) *cobra.Command {
	return leaf("list", "list principals and their permissions", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			resp, err := ac.ListPrincipals(ctx, &authv1.ListPrincipalsRequest{})
			if err != nil {
				return explain(err, "list principals")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				var rows [][]string
				for _, p := range resp.GetPrincipals() {
					rows = append(rows, []string{p.GetName(), grantsText(p.GetGrants())})
				}
				return table(w, []string{"PRINCIPAL", "GRANTS"}, rows)
			})
		})
	})
}

func authPrincipalDeleteCmd(c *conn) *cobra.Command {
	return leaf("delete NAME", "delete a principal and revoke all its keys", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			resp, err := ac.DeletePrincipal(ctx, &authv1.DeletePrincipalRequest{Principal: pos[0]})
			if err != nil {
				return explain(err, "delete principal "+pos[0])
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				revoked := "no keys"
				if ks := resp.GetRevokedKeys(); len(ks) > 0 {
					revoked = "revoked keys " + strings.Join(ks, ", ")
				}
				_, err := fmt.Fprintf(w, "principal %s deleted; %s\n", pos[0], revoked)
				return err
			})
		})
	})
}

func authKeyCreateCmd(c *conn) *cobra.Command {
	var principal string
	var grants []string
	cmd := leaf("create --principal NAME [--grant TABLE=LEVEL ...]", "issue an API key (its secret is shown once)", 0, 0, func(cmd *cobra.Command, _ []string) error {
		if principal == "" {
			return usageErr("--principal is required")
		}
		gs, err := parseGrants(grants)
		if err != nil {
			return err
		}
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			if len(grants) > 0 {
				if _, err := ac.SetGrants(ctx, &authv1.SetGrantsRequest{Principal: principal, Grants: gs}); err != nil {
					return explain(err, "set principal "+principal)
				}
			}
			resp, err := ac.CreateKey(ctx, &authv1.CreateKeyRequest{Principal: principal})
			if err != nil {
				return explain(err, "create key for "+principal)
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error { return keyCreatedText(w, resp) })
		})
	})
	cmd.Flags().StringVar(&principal, "principal", "", "the principal the key authenticates (must exist unless --grant is given)")
	cmd.Flags().StringArrayVar(&grants, "grant", nil, "first set the principal's permissions (creating it): TABLE=LEVEL, repeatable")
	return cmd
}

func keyCreatedText(w io.Writer, resp *authv1.CreateKeyResponse) error {
	k := resp.GetKey()
	_, err := fmt.Fprintf(w, `key %s for principal %s
secret: %s
token:  %s

The secret is shown only now; store it.
gRPC clients (veltrix CLI):
  export VELTRIX_TOKEN=%s
DynamoDB endpoint (AWS SDKs and CLI, SigV4):
  export AWS_ACCESS_KEY_ID=%s
  export AWS_SECRET_ACCESS_KEY=%s
`, k.GetId(), k.GetPrincipal(), resp.GetSecret(), resp.GetToken(), resp.GetToken(), k.GetId(), resp.GetSecret())
	return err
}

func authKeyListCmd(c *conn) *cobra.Command {
	var principal string
	cmd := leaf("list [--principal NAME]", "list API keys (never their secrets)", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			resp, err := ac.ListKeys(ctx, &authv1.ListKeysRequest{Principal: principal})
			if err != nil {
				return explain(err, "list keys")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				var rows [][]string
				for _, k := range resp.GetKeys() {
					rows = append(rows, []string{k.GetId(), k.GetPrincipal(), fmtTime(k.GetCreated().AsTime()), orDash(k.GetCreatedBy())})
				}
				return table(w, []string{"ID", "PRINCIPAL", "CREATED", "CREATED BY"}, rows)
			})
		})
	})
	cmd.Flags().StringVar(&principal, "principal", "", "list only this principal's keys")
	return cmd
}

func authKeyRevokeCmd(c *conn) *cobra.Command {
	return leaf("revoke ID", "revoke an API key: every router refuses it within a second", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withAuth(cmd, func(ctx context.Context, ac authv1.AuthServiceClient) error {
			resp, err := ac.RevokeKey(ctx, &authv1.RevokeKeyRequest{Id: pos[0]})
			if err != nil {
				return explain(err, "revoke key "+pos[0])
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				_, err := fmt.Fprintf(w, "key %s revoked\n", pos[0])
				return err
			})
		})
	})
}
