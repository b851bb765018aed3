package e2e

import (
	"os"
	"testing"

	"github.com/veltrixdb/veltrix/e2e/framework"
)

// TestMain removes the binaries e2e/framework built and fails the run if a
// process it spawned outlived the tests.
func TestMain(m *testing.M) {
	os.Exit(framework.Main(m))
}
