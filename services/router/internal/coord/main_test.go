package coord

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// stragglerGrace is how long goroutines may outlive the tests before they
// count as leaked: by design a write's calls to slow replicas continue
// after it returned, until Options.Timeout (at most 1s in these tests).
// A goroutine that really leaked never ends and still fails the package.
const stragglerGrace = 3 * time.Second

// TestMain fails the package if a goroutine outlives the tests: a
// straggling write, a repair, a hedge, a hint or a bufconn server left
// running. grpc-go's and bufconn's own goroutines end when the tests
// close their connections and servers, so no function is ignored.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(stragglerGrace); ; {
			// Find itself retries for a few hundred milliseconds.
			if err = goleak.Find(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines outlived the tests by %s: %v\n", stragglerGrace, err)
			code = 1
		}
	}
	os.Exit(code)
}
