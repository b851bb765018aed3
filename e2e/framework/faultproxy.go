package framework

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// FaultProxy is a TCP proxy on a loopback port in front of one process,
// which fault tests use to cut that process off the network while it keeps
// running.
//
// A cut is a blackhole, not a reset: bytes already in flight are dropped,
// live connections stay open but carry nothing (like a link that loses
// every packet, so the callers' requests hang until their deadlines), and
// new connections are accepted but never reach the target. Heal closes
// every blackholed connection (as TCP does once it gives up retransmitting)
// and forwards new connections again.
//
// Cut blackholes every connection; CutFrom blackholes only the connections
// opened by one process (found by its pid through /proc on Linux), which is
// how a test also cuts that process's own outgoing connections to its
// peers. Methods are safe for concurrent use.
type FaultProxy struct {
	ln     net.Listener
	target func() string
	port   int

	mu      sync.Mutex
	cut     bool
	cutPIDs map[int]bool
	conns   map[*proxyConn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// proxyConn is one client connection and, unless blackholed from its
// start, its connection to the target.
type proxyConn struct {
	client   net.Conn
	upstream net.Conn // nil when accepted during a cut
	// srcPort is the client's port, to find the process that opened it.
	srcPort int
	// holed is set (under FaultProxy.mu) once the connection is
	// blackholed; it is never cleared: Heal closes the connection.
	holed bool
}

// NewFaultProxy listens on a free loopback port and forwards every
// connection to target(), read when each connection is accepted (so the
// target's port may change across restarts).
func NewFaultProxy(target func() string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("framework: fault proxy: %w", err)
	}
	p := &FaultProxy{
		ln: ln, target: target, port: ln.Addr().(*net.TCPAddr).Port,
		cutPIDs: map[int]bool{}, conns: map[*proxyConn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (127.0.0.1:PORT), the one clients dial.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// Cut blackholes every connection, live and new, until Heal.
func (p *FaultProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.holed = true
	}
}

// CutFrom blackholes every connection opened by process pid, live and new,
// until Heal. It fails where the owner of a connection cannot be found
// (outside Linux).
func (p *FaultProxy) CutFrom(pid int) error {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.cutPIDs[pid] = true
	p.mu.Unlock()
	var errs []error
	for _, c := range conns {
		owned, err := socketOwnedBy(pid, c.srcPort, p.port)
		if err != nil {
			errs = append(errs, err)
		}
		if owned || err != nil {
			p.mu.Lock()
			c.holed = true
			p.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Heal closes every blackholed connection and forwards new connections
// again, from every process.
func (p *FaultProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	clear(p.cutPIDs)
	for c := range p.conns {
		if c.holed {
			c.close()
			delete(p.conns, c)
		}
	}
}

// Close stops listening and closes every connection.
func (p *FaultProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (c *proxyConn) close() {
	_ = c.client.Close()
	if c.upstream != nil {
		_ = c.upstream.Close()
	}
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		c := &proxyConn{client: nc, srcPort: nc.RemoteAddr().(*net.TCPAddr).Port}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve decides whether c is blackholed from its start, connects it to the
// target otherwise, and copies bytes both ways until either side closes.
func (p *FaultProxy) serve(c *proxyConn) {
	defer p.wg.Done()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.client.Close()
		return
	}
	holed := p.cut
	pids := make([]int, 0, len(p.cutPIDs))
	for pid := range p.cutPIDs {
		pids = append(pids, pid)
	}
	p.mu.Unlock()
	for _, pid := range pids {
		if owned, err := socketOwnedBy(pid, c.srcPort, p.port); owned || err != nil {
			holed = true
		}
	}
	if !holed {
		up, err := net.DialTimeout("tcp", p.target(), 5*time.Second)
		if err != nil {
			_ = c.client.Close() // as a refused connection
			return
		}
		c.upstream = up
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	// A Cut or CutFrom may have come while connecting.
	c.holed = holed || p.cut
	p.conns[c] = struct{}{}
	later := make([]int, 0, len(p.cutPIDs))
	for pid := range p.cutPIDs {
		later = append(later, pid)
	}
	p.mu.Unlock()
	for _, pid := range later {
		if owned, err := socketOwnedBy(pid, c.srcPort, p.port); owned || err != nil {
			p.mu.Lock()
			c.holed = true
			p.mu.Unlock()
		}
	}
	if c.upstream == nil {
		p.pump(c, c.client, io.Discard)
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pump(c, c.upstream, c.client)
	}()
	p.pump(c, c.client, c.upstream)
}

// pump copies src to dst while c is not blackholed and drops what it reads
// once it is. It closes c when src ends.
func (p *FaultProxy) pump(c *proxyConn, src io.Reader, dst io.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			holed := c.holed
			p.mu.Unlock()
			if !holed {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			p.mu.Lock()
			c.close()
			delete(p.conns, c)
			p.mu.Unlock()
			return
		}
	}
}

// String names the proxy in messages.
func (p *FaultProxy) String() string {
	return "fault proxy :" + strconv.Itoa(p.port)
}
