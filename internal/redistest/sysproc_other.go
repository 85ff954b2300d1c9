//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: parent-death signals are Linux-only, so
// elsewhere a killed test binary may leave its redis-server running.
func sysProcAttr() *syscall.SysProcAttr { return nil }
