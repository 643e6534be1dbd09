// Package freeport hands tests loopback ports that are free for both UDP and
// TCP, for servers a test starts on a port it must know beforehand (a child
// process's listener, a NATS route, Kamailio).
//
// Ports are drawn below the kernel's ephemeral range. A port learnt by
// binding port 0 and closing comes from that range, so any socket bound to
// port 0 meanwhile (a NATS client, another test's probe, a SIP client) can
// take it before the server binds it; below the range only another explicit
// bind can, and a port is never handed out twice in one test binary.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// base is the lowest port handed out: above the registered services most
// machines run.
const base = 10000

// Ports handed out in this test binary: parallel tests must not get the
// same one.
var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Get returns a port free on 127.0.0.1 for both UDP and TCP.
func Get() (int, error) {
	lo := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	if lo <= base+1000 {
		return 0, fmt.Errorf("freeport: the ephemeral port range starts at %d: no room below it", lo)
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := base + rand.IntN(lo-base)
		if used[port] || !free(port) {
			continue
		}
		used[port] = true
		return port, nil
	}
	return 0, errors.New("freeport: no port free for both UDP and TCP on 127.0.0.1")
}

// T is Get for a test, which fails when no port is free.
func T(t testing.TB) int {
	t.Helper()
	port, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Addr is T as 127.0.0.1:port.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(T(t)))
}

func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
