package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"
	"github.com/veltrixdb/veltrix/pkg/client"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/grpc/metadata"
)

func init() {
	register(command{name: "migrate", build: migrateCmd})
}

// userMetadata is the gRPC metadata key the routers record as who made a
// migration change (the router's server.UserMetadata).
const userMetadata = "x-veltrix-user"

func migrateCmd(c *conn) *cobra.Command {
	return group("migrate", "migrate a DynamoDB table live behind the DynamoDB endpoint: start, status, advance, rollback, finish, list, mismatches",
		migrateStartCmd(c), migrateStatusCmd(c), migrateAdvanceCmd(c), migrateRollbackCmd(c),
		migrateFinishCmd(c), migrateListCmd(c), migrateMismatchesCmd(c))
}

// withMigration runs fn with the routers' MigrationService, under a context
// that names the person (user@host) for the migration's history.
func (c *conn) withMigration(cmd *cobra.Command, fn func(ctx context.Context, mc migrationv1.MigrationServiceClient) error) error {
	return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
		return fn(metadata.AppendToOutgoingContext(ctx, userMetadata, currentUser()), migrationv1.NewMigrationServiceClient(cl.Conn()))
	})
}

// currentUser is "user@host" for the history ("cli@host" without $USER).
func currentUser() string {
	user, _ := lookupEnv("USER")
	if user == "" {
		user = "cli"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return user + "@" + host
}

// phaseShort is a phase as people read it: "cutover 25%", "mirror".
func phaseShort(p migrationv1.Phase, percent uint32) string {
	n := strings.ToLower(strings.TrimPrefix(p.String(), "PHASE_"))
	if p == migrationv1.Phase_PHASE_CUTOVER {
		n += fmt.Sprintf(" %d%%", percent)
	}
	return n
}

// parsePhase parses --to: proxy, mirror, shadow, cutover, veltrix.
func parsePhase(s string) (migrationv1.Phase, error) {
	v, ok := migrationv1.Phase_value["PHASE_"+strings.ToUpper(s)]
	if !ok || v == 0 || v == int32(migrationv1.Phase_PHASE_DONE) {
		return 0, usageErr("--to %q: want mirror, shadow, cutover or veltrix (done is 'veltrix migrate finish')", s)
	}
	return migrationv1.Phase(v), nil
}

func printMigration(w io.Writer, c *conn, m *migrationv1.Migration, verb string) error {
	return c.print(w, m, func() error {
		_, err := fmt.Fprintf(w, "table %s: %s; phase %s since %s\n", m.GetTable(), verb,
			strings.ToUpper(phaseShort(m.GetPhase(), m.GetCutoverPercent())), fmtTime(m.GetPhaseTime().AsTime()))
		return err
	})
}

// sdkDefaultRegion is the AWS SDK's default region where the CLI runs
// (AWS_REGION, AWS_DEFAULT_REGION, else the region of the shared config's
// profile), "" when none is configured.
func sdkDefaultRegion(ctx context.Context) (string, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return "", usageErr("--region not given, and the AWS SDK's configuration here cannot be read (%v); pass --region with the upstream table's region", err)
	}
	return cfg.Region, nil
}

func migrateStartCmd(c *conn) *cobra.Command {
	var endpoint, upTable, region, reason string
	cmd := leaf("start TABLE --upstream-endpoint URL --upstream-table NAME", "start migrating a DynamoDB table into TABLE (phase proxy; creates TABLE with upstream's key schema if missing)", 1, 1, func(cmd *cobra.Command, pos []string) error {
		if upTable == "" {
			return usageErr("--upstream-table is required")
		}
		if region == "" {
			// The SDK's default here; with none the router resolves its own,
			// or refuses naming --region.
			r, err := sdkDefaultRegion(cmd.Context())
			if err != nil {
				return err
			}
			region = r
		}
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: pos[0], Reason: reason,
				Upstream: &migrationv1.Upstream{Endpoint: endpoint, Table: upTable, Region: region}})
			if err != nil {
				return explain(err, "migrate start")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				verb := "migration started (the table existed with the same key schema)"
				if resp.GetCreatedTable() {
					verb = "migration started, table created with upstream's key schema"
				}
				if err := printMigration(w, c, resp.GetMigration(), verb); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "every request to %s through the DynamoDB endpoint now goes to upstream table %s (region %s); next: veltrix migrate advance %s (to mirror)\n",
					pos[0], upTable, resp.GetMigration().GetUpstream().GetRegion(), pos[0])
				return err
			})
		})
	})
	fs := cmd.Flags()
	fs.StringVar(&endpoint, "upstream-endpoint", "", "upstream DynamoDB endpoint URL (empty: AWS's regional endpoint)")
	fs.StringVar(&upTable, "upstream-table", "", "upstream DynamoDB table (required)")
	fs.StringVar(&region, "region", "", "upstream AWS region (default: the AWS SDK's here: AWS_REGION, AWS_DEFAULT_REGION or the shared config's profile; else the router's; refused when neither has one)")
	fs.StringVar(&reason, "reason", "", "why, recorded in the migration's history")
	return cmd
}

func migrateStatusCmd(c *conn) *cobra.Command {
	return leaf("status TABLE", "show a migration: phase, time in phase, exit criteria (✓/✗), figures, history", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: pos[0]})
			if err != nil {
				return explain(err, "migrate status")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error { return statusText(w, resp) })
		})
	})
}

// statusText writes a migration's status for people.
func statusText(w io.Writer, r *migrationv1.GetMigrationResponse) error {
	m, st := r.GetMigration(), r.GetStats()
	up := m.GetUpstream()
	where := up.GetEndpoint()
	if where == "" {
		where = "AWS"
	}
	if up.GetRegion() != "" {
		where += " (" + up.GetRegion() + ")"
	}
	fmt.Fprintf(w, "table %s  ←  upstream table %s at %s\n", m.GetTable(), up.GetTable(), where)
	fmt.Fprintf(w, "phase:    %s for %s (since %s)\n", strings.ToUpper(phaseShort(m.GetPhase(), m.GetCutoverPercent())),
		r.GetTimeInPhase().AsDuration(), fmtTime(m.GetPhaseTime().AsTime()))
	switch r.GetNext() {
	case migrationv1.Phase_PHASE_UNSPECIFIED:
		fmt.Fprintf(w, "next:     none (done)\n")
	case migrationv1.Phase_PHASE_DONE:
		fmt.Fprintf(w, "next:     done (veltrix migrate finish %s)\n", m.GetTable())
	default:
		fmt.Fprintf(w, "next:     %s (veltrix migrate advance %s)\n", phaseShort(r.GetNext(), r.GetNextPercent()), m.GetTable())
	}
	if m.GetImportJob() != "" {
		fmt.Fprintf(w, "import:   job %s\n", m.GetImportJob())
	}
	lag := "no stream job"
	if d := st.GetCdcLag(); d != nil {
		lag = d.AsDuration().String()
	}
	fmt.Fprintf(w, "figures:  over %s from %d routers: read P99 Veltrix %s, DynamoDB %s; %d mirrored writes, %d failed, %d queued; %d reads compared, %d mismatches; %d Veltrix 5xx; cache hit ratio %.2f %%; CDC lag %s\n\n",
		st.GetWindow().AsDuration(), st.GetRouters(), st.GetVeltrixReadP99().AsDuration(), st.GetDynamodbReadP99().AsDuration(),
		st.GetWritesMirrored(), st.GetMirrorFailures(), st.GetMirrorPending(), st.GetReadsCompared(), st.GetMismatches(),
		st.GetVeltrix_5Xx(), st.GetCacheHitRatioPercent(), lag)
	if len(r.GetCriteria()) == 0 {
		fmt.Fprintf(w, "exit criteria: none in this phase\n")
	} else {
		rows := make([][]string, 0, len(r.GetCriteria()))
		for _, c := range r.GetCriteria() {
			mark := "✗"
			if c.GetMet() {
				mark = "✓"
			}
			rows = append(rows, []string{mark, c.GetName(), c.GetValue(), c.GetGoal()})
		}
		if err := table(w, []string{"MET", "CRITERION", "VALUE", "GOAL"}, rows); err != nil {
			return err
		}
	}
	hist := m.GetHistory()
	if len(hist) > 5 {
		hist = hist[len(hist)-5:]
	}
	fmt.Fprintf(w, "\nhistory (last %d of %d):\n", len(hist), len(m.GetHistory()))
	rows := make([][]string, 0, len(hist))
	for _, h := range hist {
		from := "-"
		if h.GetFrom() != migrationv1.Phase_PHASE_UNSPECIFIED {
			from = phaseShort(h.GetFrom(), h.GetFromPercent())
		}
		note := h.GetReason()
		if h.GetForced() {
			note = fmt.Sprintf("FORCED over %s: %s", strings.Join(h.GetFailedCriteria(), ", "), note)
		}
		rows = append(rows, []string{fmtTime(h.GetTime().AsTime()), from, phaseShort(h.GetTo(), h.GetToPercent()), h.GetWho(), orDash(note)})
	}
	return table(w, []string{"TIME", "FROM", "TO", "WHO", "REASON"}, rows)
}

func migrateAdvanceCmd(c *conn) *cobra.Command {
	var (
		to, reason, importJob string
		percent               uint
		force                 bool
	)
	cmd := leaf("advance TABLE [--to PHASE|--percent N] [--force --reason R]", "move a migration one step on (refused while an exit criterion fails, unless --force with --reason)", 1, 1, func(cmd *cobra.Command, pos []string) error {
		req := &migrationv1.AdvanceMigrationRequest{Table: pos[0], Force: force, Reason: reason, ImportJob: importJob}
		if to != "" {
			p, err := parsePhase(to)
			if err != nil {
				return err
			}
			req.To = p
		}
		if cmd.Flags().Changed("percent") {
			if percent > 100 {
				return usageErr("--percent %d: want 0 to 100 (a cutover step: 5, 25, 50 or 100)", percent)
			}
			req.Percent = uint32(percent)
			if req.To == migrationv1.Phase_PHASE_UNSPECIFIED && percent != 0 {
				req.To = migrationv1.Phase_PHASE_CUTOVER
			}
		}
		if force && strings.TrimSpace(reason) == "" {
			return usageErr("--force needs --reason (it is recorded in the history)")
		}
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			if req.To == migrationv1.Phase_PHASE_UNSPECIFIED && req.Percent == 0 {
				// Name the step, so a retried call cannot advance twice.
				st, err := mc.GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: pos[0]})
				if err != nil {
					return explain(err, "migrate advance")
				}
				req.To, req.Percent = st.GetNext(), st.GetNextPercent()
			}
			resp, err := mc.AdvanceMigration(ctx, req)
			if err != nil {
				return explain(err, "migrate advance")
			}
			verb := "advanced"
			if hist := resp.GetMigration().GetHistory(); len(hist) > 0 && hist[len(hist)-1].GetForced() {
				verb = "advanced (FORCED over " + strings.Join(hist[len(hist)-1].GetFailedCriteria(), ", ") + ")"
			}
			return printMigration(cmd.OutOrStdout(), c, resp.GetMigration(), verb)
		})
	})
	fs := cmd.Flags()
	fs.StringVar(&to, "to", "", "the phase to move to, which must be the next: mirror, shadow, cutover or veltrix (default: the next step)")
	fs.UintVar(&percent, "percent", 0, "the cutover percentage to move to, which must be the next step: 5, 25, 50 or 100")
	fs.BoolVar(&force, "force", false, "advance although exit criteria fail (needs --reason; recorded with the failed criteria)")
	fs.StringVar(&reason, "reason", "", "why, recorded in the migration's history")
	fs.StringVar(&importJob, "import-job", "", "the completed import leaving mirror relies on (default: the newest import of the table)")
	return cmd
}

func migrateRollbackCmd(c *conn) *cobra.Command {
	var reason string
	cmd := leaf("rollback TABLE", "return a migration in cutover or veltrix to shadow: DynamoDB serves every read again", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.RollbackMigration(ctx, &migrationv1.RollbackMigrationRequest{Table: pos[0], Reason: reason})
			if err != nil {
				return explain(err, "migrate rollback")
			}
			return printMigration(cmd.OutOrStdout(), c, resp.GetMigration(), "rolled back")
		})
	})
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the migration's history")
	return cmd
}

func migrateFinishCmd(c *conn) *cobra.Command {
	var (
		reason string
		force  bool
	)
	cmd := leaf("finish TABLE", "end a migration in veltrix: DynamoDB is no longer written (no rollback afterwards)", 1, 1, func(cmd *cobra.Command, pos []string) error {
		if force && strings.TrimSpace(reason) == "" {
			return usageErr("--force needs --reason (it is recorded in the history)")
		}
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: pos[0], Reason: reason, Force: force})
			if err != nil {
				return explain(err, "migrate finish")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				m := resp.GetMigration()
				fmt.Fprintf(w, "table %s: finished; phase %s since %s\n", m.GetTable(),
					strings.ToUpper(phaseShort(m.GetPhase(), m.GetCutoverPercent())), fmtTime(m.GetPhaseTime().AsTime()))
				if n := resp.GetPendingSyncs(); n > 0 {
					fmt.Fprintf(w, "%d queued re-syncs were pending: DONE does not re-sync, so they are dropped and those items may differ from DynamoDB; run veltrix verify against the upstream table and repair them\n", n)
				}
				return nil
			})
		})
	})
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the migration's history")
	cmd.Flags().BoolVar(&force, "force", false, "finish although exit criteria fail, queued re-syncs included, which are then dropped (needs --reason)")
	return cmd
}

func migrateListCmd(c *conn) *cobra.Command {
	return leaf("list", "list the tables with a migration", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.ListMigrations(ctx, &migrationv1.ListMigrationsRequest{})
			if err != nil {
				return explain(err, "migrate list")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				rows := make([][]string, 0, len(resp.GetMigrations()))
				for _, m := range resp.GetMigrations() {
					rows = append(rows, []string{m.GetTable(), phaseShort(m.GetPhase(), m.GetCutoverPercent()),
						fmtTime(m.GetPhaseTime().AsTime()), m.GetUpstream().GetTable(), orDash(m.GetUpstream().GetEndpoint())})
				}
				return table(w, []string{"TABLE", "PHASE", "SINCE", "UPSTREAM TABLE", "UPSTREAM ENDPOINT"}, rows)
			})
		})
	})
}

func migrateMismatchesCmd(c *conn) *cobra.Command {
	var limit uint
	cmd := leaf("mismatches TABLE", "list the kept sample of shadow-read mismatches, newest first, with both versions", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withMigration(cmd, func(ctx context.Context, mc migrationv1.MigrationServiceClient) error {
			resp, err := mc.ListMismatches(ctx, &migrationv1.ListMismatchesRequest{Table: pos[0], Limit: uint32(limit)})
			if err != nil {
				return explain(err, "migrate mismatches")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				fmt.Fprintf(w, "%d mismatches recorded, %d shown\n", resp.GetTotal(), len(resp.GetMismatches()))
				for _, m := range resp.GetMismatches() {
					fmt.Fprintf(w, "\n%s  %s  key %s  (router %s)\n", fmtTime(m.GetTime().AsTime()), m.GetOperation(), m.GetKey(), orDash(m.GetRouter()))
					for _, d := range m.GetDifferences() {
						fmt.Fprintf(w, "  differs: %s\n", d)
					}
					fmt.Fprintf(w, "  dynamodb: %s\n  veltrix:  %s\n", orAbsent(m.GetDynamodbItem()), orAbsent(m.GetVeltrixItem()))
				}
				return nil
			})
		})
	})
	cmd.Flags().UintVar(&limit, "limit", 100, "most mismatches to print")
	return cmd
}

func orAbsent(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}
