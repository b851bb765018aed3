package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"go.uber.org/goleak"
)

// TestMain removes the binaries e2e/framework built, fails the run if a
// process it spawned outlived the tests, and then, as goleak.VerifyTestMain
// would, if a goroutine did: the in-process clusters, clients and fakes
// the tests start must all be closed by the time framework.Main returns.
func TestMain(m *testing.M) {
	code := framework.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
