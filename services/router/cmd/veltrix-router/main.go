// Command veltrix-router runs a Veltrix router: the public KV and Admin
// gRPC APIs in front of the storage nodes.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/services/router/server"
)

func main() {
	var cfg server.Config
	os.Exit(svcmain.Run("veltrix-router", cfg.AddFlags, func(ctx context.Context, logger *slog.Logger) (svcmain.Closer, error) {
		cfg.Logger = logger
		return server.Start(ctx, cfg)
	}))
}
