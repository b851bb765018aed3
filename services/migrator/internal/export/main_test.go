package export_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests. Nothing
// is ignored: the goroutines of the libraries the tests use (grpc-go,
// the etcd client, the AWS SDK) end when the tests close what they opened.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
