//go:build linux

package framework

import "syscall"

// sysProcAttr makes the kernel kill a spawned process if the test binary
// dies without cleaning up (go test's timeout panic, a SIGKILL), so no
// orphan keeps a port or a data directory.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
