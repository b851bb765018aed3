// Command veltrix-storage runs a Veltrix storage node.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/services/storage/server"
)

func main() {
	var cfg server.Config
	os.Exit(svcmain.Run("veltrix-storage", cfg.AddFlags, func(ctx context.Context, logger *slog.Logger) (svcmain.Closer, error) {
		cfg.Logger = logger
		return server.Start(ctx, cfg)
	}))
}
