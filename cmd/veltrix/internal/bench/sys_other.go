//go:build !linux

package bench

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func selfCPU() time.Duration { return 0 }

func pidCPU(int) time.Duration { return 0 }
