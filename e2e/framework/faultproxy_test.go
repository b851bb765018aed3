package framework

import (
	"bufio"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// echoServer echoes every line back until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoes reports whether a line sent on c comes back within a short wait;
// a connection that fails (closed by the proxy) reports false too.
func echoes(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

func dialProxy(t *testing.T, px *FaultProxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFaultProxy(t *testing.T) {
	target := echoServer(t)
	px, err := NewFaultProxy(func() string { return target })
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()

	live := dialProxy(t, px)
	if !echoes(t, live) {
		t.Fatal("no echo through a healthy proxy")
	}

	px.Cut()
	if echoes(t, live) {
		t.Error("a live connection still carries bytes after Cut")
	}
	held := dialProxy(t, px) // accepted, but never reaches the target
	if echoes(t, held) {
		t.Error("a connection opened during the cut reaches the target")
	}

	px.Heal()
	if echoes(t, live) || echoes(t, held) {
		t.Error("a blackholed connection carries bytes after Heal; it must be closed")
	}
	if fresh := dialProxy(t, px); !echoes(t, fresh) {
		t.Error("no echo on a new connection after Heal")
	}
}

func TestFaultProxyCutFrom(t *testing.T) {
	if runtime.GOOS != "linux" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs on Linux; CutFrom needs Linux /proc")
		}
		t.Skip("CutFrom tells processes apart through Linux /proc; this is " + runtime.GOOS)
	}
	target := echoServer(t)
	px, err := NewFaultProxy(func() string { return target })
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	live := dialProxy(t, px)

	// Another process's cut leaves this one's connections alone.
	if err := px.CutFrom(1); err != nil {
		t.Fatal(err)
	}
	if !echoes(t, live) || !echoes(t, dialProxy(t, px)) {
		t.Fatal("CutFrom(1) blackholed this process's connections")
	}
	px.Heal()

	if err := px.CutFrom(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if echoes(t, live) {
		t.Error("a live connection of the cut process still carries bytes")
	}
	if echoes(t, dialProxy(t, px)) {
		t.Error("a new connection of the cut process reaches the target")
	}
	px.Heal()
	if !echoes(t, dialProxy(t, px)) {
		t.Error("no echo on a new connection after Heal")
	}
}
