package iptables

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// nsRunner runs every command inside the network namespace of pid.
type nsRunner struct{ pid int }

func (r nsRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return Exec{}.Run(ctx, stdin, "nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", r.pid), "--", name}, args...)...)
}

// readFile reads a file as a process of the namespace sees it (/proc/sys/net
// is the reader's namespace's).
func (r nsRunner) readFile(ctx context.Context) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) { return r.Run(ctx, nil, "cat", name) }
}

// must runs commands in the namespace, failing the test on error.
func (r nsRunner) must(t *testing.T, ctx context.Context, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		f := strings.Fields(c)
		if _, err := r.Run(ctx, nil, f[0], f[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

// do runs fn on an OS thread that has joined the namespace: the sockets fn
// opens live there. The thread is never given back (it ends with its
// goroutine), so no other goroutine runs in the namespace.
func (r nsRunner) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", r.pid))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// needNetns skips the test unless it can make network namespaces and has
// the tools named.
func needNetns(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range append([]string{"unshare", "nsenter", "cat"}, tools...) {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
}

// newNetns starts a process in a fresh network namespace, killed at the end
// of the test (the namespace goes with it).
func newNetns(t *testing.T, ctx context.Context) nsRunner {
	t.Helper()
	ns := exec.CommandContext(ctx, "unshare", "--net", "sleep", "60")
	if err := ns.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() { _ = ns.Process.Kill(); _ = ns.Wait() })
	self, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", ns.Process.Pid)); err == nil && l != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare did not enter a new network namespace")
		}
	}
	return nsRunner{ns.Process.Pid}
}

// TestInstallInNetns installs the rules for real, twice, in a fresh network
// namespace with each backend, in both families; and with IPv6 disabled in
// the namespace, the IPv4 rules alone. It needs root, unshare, nsenter and
// the iptables and ip6tables tools; it is skipped otherwise.
func TestInstallInNetns(t *testing.T) {
	needNetns(t, "sysctl", "iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save")
	for _, mode := range []Mode{ModeLegacy, ModeNFT} {
		for _, disabled := range []bool{false, true} {
			name := string(mode)
			if disabled {
				name += "/IPv6 disabled"
			}
			t.Run(name, func(t *testing.T) { testInstallInNetns(t, mode, disabled) })
		}
	}
}

func testInstallInNetns(t *testing.T, mode Mode, ipv6Disabled bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := newNetns(t, ctx)
	// Foreign rules that must survive.
	if _, err := run.Run(ctx, nil, "iptables-"+string(mode), "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "RETURN"); err != nil {
		t.Skipf("cannot program iptables here: %v", err)
	}
	if _, err := run.Run(ctx, nil, "ip6tables-"+string(mode), "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "RETURN"); err != nil {
		t.Skipf("cannot program ip6tables here: %v", err)
	}
	disable := "0"
	if ipv6Disabled {
		disable = "1"
	}
	run.must(t, ctx, "sysctl -qw net.ipv6.conf.all.disable_ipv6="+disable)
	var log strings.Builder
	in := &Installer{Runner: run, Log: slog.New(slog.NewTextHandler(&log, nil)), ReadFile: run.readFile(ctx)}
	c := defaults()
	c.InboundPortsToIgnore = mustPorts(t, "22")
	c.OutboundPortsToIgnore = mustPorts(t, "443,8000-8100")
	c.SubnetsToIgnore, _ = ParseSubnets("10.0.0.0/8,fd00::/8")
	saves := map[Family][]string{}
	for i := 0; i < 2; i++ {
		if err := in.Install(ctx, mode, c); err != nil {
			t.Fatalf("install #%d: %v", i+1, err)
		}
		for _, f := range Families {
			save, _ := binaries(mode, f)
			out, err := run.Run(ctx, nil, save, "-t", "nat")
			if err != nil {
				t.Fatal(err)
			}
			saves[f] = append(saves[f], stripComments(string(out)))
		}
	}
	for _, f := range Families {
		s := saves[f]
		if s[0] != s[1] {
			t.Errorf("%s: second run changed the table:\n%s\nvs\n%s", f, s[0], s[1])
		}
		want := []string{
			"-A PREROUTING -p tcp -m comment --comment \"conduit: inbound\" -j CONDUIT_INBOUND",
			"--to-ports 4143",
			"--to-ports 4140",
			"--uid-owner 2102",
			map[Family]string{IPv4: "-d 10.0.0.0/8", IPv6: "-d fd00::/8"}[f],
			map[Family]string{IPv4: "! -d 127.0.0.0/8", IPv6: "! -d ::1/128"}[f],
		}
		if f == IPv6 && ipv6Disabled {
			if strings.Contains(s[1], "CONDUIT") {
				t.Errorf("IPv6 is disabled but the IPv6 nat table has Conduit rules:\n%s", s[1])
			}
			want = nil
		}
		for _, w := range append(want, "-A POSTROUTING -p udp -j RETURN") {
			if !strings.Contains(s[1], w) {
				t.Errorf("%s nat table lacks %q:\n%s", f, w, s[1])
			}
		}
		if n := strings.Count(s[1], "-j CONDUIT_OUTBOUND"); len(want) > 0 && n != 1 {
			t.Errorf("%s: %d jumps to CONDUIT_OUTBOUND, want 1", f, n)
		}
	}
	if skipped := strings.Contains(log.String(), `msg="IPv6 nat rules skipped" reason="IPv6 is disabled in the network namespace`); skipped != ipv6Disabled {
		t.Errorf("IPv6 skip logged: %v, want %v:\n%s", skipped, ipv6Disabled, log.String())
	}
	// auto picks the backend that holds the rules.
	if got, err := in.DetectMode(ctx); err != nil || got != mode {
		t.Errorf("DetectMode = %v, %v; want %v", got, err, mode)
	}
}

// TestRedirectInNetns shows the rules at work, for each backend and family:
// a pod's network namespace joined by a veth pair to a peer's, the rules
// installed in the pod's, listeners standing for the proxy (4143, 4140), the
// application and the peer. Each connection lands where it must, and the
// proxy's listener reads the destination the client asked for.
func TestRedirectInNetns(t *testing.T) {
	needNetns(t, "ip", "sysctl", "iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save")
	for _, mode := range []Mode{ModeLegacy, ModeNFT} {
		t.Run(string(mode), func(t *testing.T) { testRedirectInNetns(t, mode) })
	}
}

func testRedirectInNetns(t *testing.T, mode Mode) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, peer := newNetns(t, ctx), newNetns(t, ctx)
	for _, ns := range []nsRunner{pod, peer} {
		// No DAD, so that addresses (the link-local one too) are usable at once.
		ns.must(t, ctx, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0", "sysctl -qw net.ipv6.conf.default.disable_ipv6=0",
			"sysctl -qw net.ipv6.conf.all.accept_dad=0", "sysctl -qw net.ipv6.conf.default.accept_dad=0", "ip link set lo up")
	}
	if _, err := pod.Run(ctx, nil, "ip", "link", "add", "c0", "type", "veth", "peer", "name", "p0", "netns", fmt.Sprint(peer.pid)); err != nil {
		t.Skipf("no veth: %v", err)
	}
	pod.must(t, ctx, "ip addr add 10.200.0.1/24 dev c0", "ip -6 addr add fd00:c0::1/64 dev c0 nodad", "ip link set c0 up")
	peer.must(t, ctx, "ip addr add 10.200.0.2/24 dev p0", "ip addr add 10.200.0.3/24 dev p0",
		"ip -6 addr add fd00:c0::2/64 dev p0 nodad", "ip -6 addr add fd00:c0::3/64 dev p0 nodad", "ip link set p0 up")

	in := &Installer{Runner: pod, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ReadFile: pod.readFile(ctx)}
	c := defaults()
	c.IPv6 = IPv6On
	c.InboundPortsToIgnore = mustPorts(t, "2222")
	c.OutboundPortsToIgnore = mustPorts(t, "443")
	c.SubnetsToIgnore, _ = ParseSubnets("10.200.0.3,fd00:c0::3")
	if err := in.Install(ctx, mode, c); err != nil {
		if _, err6 := pod.Run(ctx, nil, "ip6tables-"+string(mode), "-t", "nat", "-S"); err6 != nil {
			t.Skipf("ip6tables cannot use the nat table here: %v", err6)
		}
		t.Fatal(err)
	}

	// Listeners: each answers its name and the original destination it
	// reads ("-" when the connection was not redirected).
	listen := func(ns nsRunner, name string, addrs ...string) {
		for _, a := range addrs {
			network := "tcp4"
			if strings.HasPrefix(a, "[") {
				network = "tcp6"
			}
			var l net.Listener
			if err := ns.do(func() (err error) { l, err = net.Listen(network, a); return err }); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					dst := "-"
					if d, err := (origdst.Kernel{}).OriginalDst(conn); err == nil {
						dst = d.String()
					}
					fmt.Fprintf(conn, "%s %s\n", name, dst)
					_ = conn.Close()
				}
			}()
		}
	}
	listen(pod, "inbound", "0.0.0.0:4143", "[::]:4143")
	listen(pod, "outbound", "127.0.0.1:4140", "[::1]:4140")
	listen(pod, "app", "0.0.0.0:8080", "[::]:8080", "0.0.0.0:2222", "[::]:2222")
	listen(peer, "peer", "0.0.0.0:80", "[::]:80", "0.0.0.0:443", "[::]:443")

	addrs := map[string][2]string{ // name: IPv4, IPv6
		"pod": {"10.200.0.1", "fd00:c0::1"}, "peer": {"10.200.0.2", "fd00:c0::2"},
		"ignored": {"10.200.0.3", "fd00:c0::3"}, "loopback": {"127.0.0.1", "::1"},
	}
	for _, f := range Families {
		addr := func(host string, port int) string {
			a := addrs[host][0]
			if f == IPv6 {
				a = addrs[host][1]
			}
			return net.JoinHostPort(a, fmt.Sprint(port))
		}
		for _, tc := range []struct {
			name     string
			from     nsRunner
			host     string
			port     int
			want     string // listener name
			redirect bool   // want the original destination read
		}{
			{"inbound to the pod IP", peer, "pod", 8080, "inbound", true},
			{"inbound to an ignored port", peer, "pod", 2222, "app", false},
			{"outbound", pod, "peer", 80, "outbound", true},
			{"outbound to an ignored port", pod, "peer", 443, "peer", false},
			{"outbound to an ignored subnet", pod, "ignored", 80, "peer", false},
			{"the application to its own pod IP", pod, "pod", 8080, "inbound", true},
			{"loopback", pod, "loopback", 8080, "app", false},
		} {
			t.Run(f.String()+"/"+tc.name, func(t *testing.T) {
				dst := addr(tc.host, tc.port)
				var got string
				err := tc.from.do(func() error {
					conn, err := net.DialTimeout("tcp", dst, 3*time.Second)
					if err != nil {
						return err
					}
					defer conn.Close()
					_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
					got, err = bufio.NewReader(conn).ReadString('\n')
					return err
				})
				if err != nil {
					t.Fatalf("connect to %s: %v", dst, err)
				}
				want := tc.want + " -\n"
				if tc.redirect {
					want = tc.want + " " + dst + "\n"
				}
				if got != want {
					t.Errorf("connection to %s reached %q, want %q", dst, strings.TrimSpace(got), strings.TrimSpace(want))
				}
			})
		}
	}
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
