//go:build linux

package framework

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// socketOwnedBy reports whether process pid holds the loopback TCP socket
// from local port srcPort to remote port dstPort: it finds the socket's
// inode in /proc/net/tcp, then looks for it among pid's open files.
func socketOwnedBy(pid, srcPort, dstPort int) (bool, error) {
	inode, err := tcpInode(srcPort, dstPort)
	if err != nil || inode == "" {
		return false, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil // the process is gone
		}
		return false, fmt.Errorf("framework: fds of pid %d: %w", pid, err)
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name())); err == nil && l == want {
			return true, nil
		}
	}
	return false, nil
}

// tcpInode is the inode of the IPv4 socket 127.0.0.1:srcPort ->
// 127.0.0.1:dstPort, "" if there is none (it closed).
func tcpInode(srcPort, dstPort int) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", fmt.Errorf("framework: %w", err)
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", srcPort)
	remote := fmt.Sprintf("0100007F:%04X", dstPort)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1] != local || fs[2] != remote {
			continue
		}
		if _, err := strconv.ParseUint(fs[9], 10, 64); err != nil {
			return "", fmt.Errorf("framework: /proc/net/tcp: bad inode %q", fs[9])
		}
		return fs[9], nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("framework: /proc/net/tcp: %w", err)
	}
	return "", nil
}
