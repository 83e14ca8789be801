//go:build e2e

package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wireCapture watches every frame of the host's network namespace but its
// loopback (an AF_PACKET socket for all protocols, as tcpdump -i any does):
// the host ends of the pods' veths and the pod bridge among them, so it sees every
// byte that crosses the pod network between two pods. Traffic inside a pod
// (the application and its proxy over the pod's loopback) is in the pod's
// own namespace and is not seen.
type wireCapture struct {
	fd       int
	loopback int // index of the host's loopback interface, not captured
	marker   []byte
	seen     atomic.Int64
	frames   atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// newMarker returns a string unlikely to appear on the wire by chance.
func newMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "conduit-e2e-secret-" + hex.EncodeToString(b)
}

// captureMarker starts counting the frames whose bytes contain marker. It
// needs root (CAP_NET_RAW), as the rest of make e2e.
func captureMarker(t *testing.T, marker string) *wireCapture {
	t.Helper()
	proto := int(uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8) // htons(ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		t.Fatalf("capture: AF_PACKET socket (needs root): %v", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		t.Fatalf("capture: SO_RCVTIMEO: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		unix.Close(fd)
		t.Fatalf("capture: loopback interface: %v", err)
	}
	c := &wireCapture{fd: fd, loopback: lo.Index, marker: []byte(marker), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	t.Cleanup(c.Stop)
	return c
}

func (c *wireCapture) loop() {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			select {
			case <-c.stop:
				return
			default:
				continue
			}
		}
		if err != nil {
			return
		}
		// The host's loopback is not the pod network, and carries `kubectl
		// exec` in clear between the kubelet and the container runtime's
		// streaming server (the test's own commands, marker included).
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Ifindex == c.loopback {
			continue
		}
		c.frames.Add(1)
		if bytes.Contains(buf[:n], c.marker) {
			c.seen.Add(1)
		}
	}
}

// Stop ends the capture; Seen and Frames are final afterwards.
func (c *wireCapture) Stop() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		unix.Close(c.fd)
	})
}

// Seen is the number of frames that carried the marker in clear.
func (c *wireCapture) Seen() int64 { return c.seen.Load() }

// Frames is the number of frames captured.
func (c *wireCapture) Frames() int64 { return c.frames.Load() }

// capturedMarker runs send with a new marker while the wire is captured,
// and waits half a second for the last frames; it returns what send
// returned, the marker and the capture, stopped.
func capturedMarker(t *testing.T, send func(marker string) string) (string, string, *wireCapture) {
	t.Helper()
	marker := newMarker()
	c := captureMarker(t, marker)
	out := send(marker)
	time.Sleep(500 * time.Millisecond)
	c.Stop()
	return out, marker, c
}
