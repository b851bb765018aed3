// Command etcd-embedded runs a single-member etcd (pkg/etcdembed) as its own
// process, so the end-to-end tests get a real, external etcd with nothing
// installed but Go. It prints "etcd ready: <client URL>" on stdout once the
// member serves clients and stops it on SIGINT or SIGTERM.
//
// Usage:
//
//	etcd-embedded --data-dir DIR --client-port PORT [--peer-port PORT] [--unsafe-no-fsync]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("etcd-embedded", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "etcd data directory (required; reusing it restarts the member)")
	clientPort := fs.Int("client-port", 0, "client port on 127.0.0.1 (0: a free port)")
	peerPort := fs.Int("peer-port", 0, "peer port on 127.0.0.1 (0: a free port)")
	noFsync := fs.Bool("unsafe-no-fsync", false, "skip fsync (tests only: a crash may lose data)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd-embedded: --data-dir is required")
		return 2
	}
	// Catch the signals before starting, so a SIGTERM sent during start-up
	// still stops the member cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	e, err := etcdembed.Start(etcdembed.Config{
		Dir: *dataDir, ClientPort: *clientPort, PeerPort: *peerPort, UnsafeNoFsync: *noFsync,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-embedded: %v\n", err)
		return 1
	}
	fmt.Printf("etcd ready: %s\n", e.Endpoint())
	s := <-sig
	fmt.Printf("etcd stopping on %s\n", s)
	e.Close()
	return 0
}
