// Command veltrix-migrator runs a Veltrix migrator: import and verify jobs
// for DynamoDB exports, kept in etcd and written through the routers.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/services/migrator/server"
)

func main() {
	var cfg server.Config
	os.Exit(svcmain.Run("veltrix-migrator", cfg.AddFlags, func(ctx context.Context, logger *slog.Logger) (svcmain.Closer, error) {
		cfg.Logger = logger
		return server.Start(ctx, cfg)
	}))
}
