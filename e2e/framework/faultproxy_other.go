//go:build !linux

package framework

import "errors"

// socketOwnedBy needs /proc; elsewhere FaultProxy.CutFrom blackholes every
// connection and reports this error.
func socketOwnedBy(pid, srcPort, dstPort int) (bool, error) {
	return false, errors.New("framework: FaultProxy.CutFrom needs Linux /proc")
}
