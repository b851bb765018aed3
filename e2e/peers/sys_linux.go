//go:build linux

package peers

import "syscall"

// sysProcAttr makes the kernel kill a peer if the test binary dies without
// cleaning up (go test's timeout panic, a SIGKILL), so no orphan keeps a
// port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
