package server

import (
	"context"
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
)

// migrationOptions starts the etcd watch of migrations the DynamoDB
// endpoint routes by (migration mode) and returns the endpoint's
// migration options: that Control, the skew allowance and the upstream
// credentials (Config.UpstreamAWSConfig: flags, else the SDK's chain).
func (s *Server) migrationOptions() (dynamodb.MigrationOptions, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	w, err := migration.NewStore(s.etcd, s.cfg.Cluster).Watch(ctx, migration.WatcherOptions{
		Logger: s.logger.With("component", "migration"), RouterID: s.cfg.ID, Registerer: s.Registry,
	})
	if err != nil {
		return dynamodb.MigrationOptions{}, fmt.Errorf("router: DynamoDB endpoint: watch migrations: %w", err)
	}
	aws, err := s.cfg.UpstreamAWSConfig(ctx, &migrationv1.Upstream{})
	if err != nil {
		w.Close()
		return dynamodb.MigrationOptions{}, err
	}
	s.migWatcher = w
	// aws.Region: the SDK's default region, else --dynamodb-region.
	return dynamodb.MigrationOptions{Control: w, Skew: s.cfg.MigrationSkew, Credentials: aws.Credentials, Region: aws.Region, RouterID: s.cfg.ID}, nil
}
