//go:build !linux

package peers

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// the test's cleanup is the only guard.
func sysProcAttr() *syscall.SysProcAttr { return nil }
