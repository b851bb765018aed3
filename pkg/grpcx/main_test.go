package grpcx

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests (a Mux
// stream's workers or reader, a server's).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
