package appsockets

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// Socket is a socket that a process of another user than the proxy's holds.
type Socket struct {
	// Proto is the /proc/net file that lists it: tcp, tcp6, udp or udp6.
	Proto string
	// Local is its local address.
	Local netip.AddrPort
	// State is the kernel's state number (TCP: 0x0A listening, 0x01 established).
	State uint8
	// UID is its owner.
	UID uint32
}

func (s Socket) String() string {
	return fmt.Sprintf("%s %s uid %d state %02X", s.Proto, s.Local, s.UID, s.State)
}

// protos are the /proc/net files read, in order.
var protos = []string{"tcp", "tcp6", "udp", "udp6"}

// Held lists the sockets of /proc/net/{tcp,tcp6,udp,udp6} under procRoot
// ("/proc": the caller's network namespace) that a process of a user other
// than uid holds. A file that does not exist (no IPv6) lists none.
func Held(procRoot string, uid uint32) ([]Socket, error) {
	var out []Socket
	for _, proto := range protos {
		f, err := os.Open(filepath.Join(procRoot, "net", proto))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("appsockets: %w", err)
		}
		out, err = Parse(out, f, proto, uid)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Parse appends to dst the sockets of one /proc/net/{tcp,tcp6,udp,udp6}
// file (proto names it) that a process holds (a non-zero inode) and whose
// owner is not uid. A line it cannot read is an error naming the line.
func Parse(dst []Socket, r io.Reader, proto string, uid uint32) ([]Socket, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 512), 4096)
	for n := 1; s.Scan(); n++ {
		if n == 1 {
			continue // the header
		}
		sock, held, err := parseLine(s.Bytes(), proto)
		if err != nil {
			return dst, fmt.Errorf("appsockets: /proc/net/%s line %d: %w", proto, n, err)
		}
		if held && sock.UID != uid {
			dst = append(dst, sock)
		}
	}
	if err := s.Err(); err != nil {
		return dst, fmt.Errorf("appsockets: /proc/net/%s: %w", proto, err)
	}
	return dst, nil
}

// parseLine reads "sl local remote st queues timer retrnsmt uid timeout
// inode ...": the local address, the state, the owner, and whether the inode
// is non-zero.
func parseLine(line []byte, proto string) (Socket, bool, error) {
	f := bytes.Fields(line)
	if len(f) < 10 {
		return Socket{}, false, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	local, err := parseAddr(f[1])
	if err != nil {
		return Socket{}, false, fmt.Errorf("local address %q: %w", f[1], err)
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil {
		return Socket{}, false, fmt.Errorf("state %q: %w", f[3], err)
	}
	uid, err := strconv.ParseUint(string(f[7]), 10, 32)
	if err != nil {
		return Socket{}, false, fmt.Errorf("uid %q: %w", f[7], err)
	}
	inode, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil {
		return Socket{}, false, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return Socket{Proto: proto, Local: local, State: uint8(st), UID: uint32(uid)}, inode != 0, nil
}

// parseAddr reads "0100007F:1F90": the address as the kernel's 32-bit words
// in hex, each in the machine's byte order, then the port.
func parseAddr(b []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, errors.New("no ':'")
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	var raw [16]byte
	n, err := hex.Decode(raw[:], b[:min(i, 32)])
	if err != nil || n*2 != i || (n != 4 && n != 16) {
		return netip.AddrPort{}, errors.New("not 8 or 32 hex digits")
	}
	var ip [16]byte
	for w := 0; w < n; w += 4 {
		binary.BigEndian.PutUint32(ip[w:], binary.NativeEndian.Uint32(raw[w:]))
	}
	a := netip.AddrFrom16(ip)
	if n == 4 {
		a = netip.AddrFrom4([4]byte(ip[:4]))
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}
