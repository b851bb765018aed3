//go:build !linux

package framework

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// the cleanup and Main's orphan check are the only guard.
func sysProcAttr() *syscall.SysProcAttr { return nil }
