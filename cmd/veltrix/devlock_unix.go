//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive flock on dir/veltrix-dev.lock and writes
// this process's pid into it, so a second `veltrix dev` on the same
// directory stops at once with the holder's pid instead of blocking on
// etcd's own lock of its data files (which ignores Ctrl-C). The kernel
// drops the lock when the process ends, however it ends; unlock drops it
// earlier.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, devLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "pid unknown"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					who = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, &dataDirBusyError{msg: fmt.Sprintf("another veltrix dev is using %s (%s); stop it, or pass another --data-dir", dir, who)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return func() {
		_ = f.Truncate(0)
		_ = f.Close()
	}, nil
}
