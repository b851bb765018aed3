//go:build !unix

package main

import (
	"fmt"
	"os"
)

// lockDataDir only creates dir where flock(2) does not exist: etcd's own
// lock of its files is then the only guard.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return func() {}, nil
}
