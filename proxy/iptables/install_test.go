package iptables

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

// fakeTables serves each tool's save from its own table (by command prefix:
// iptables, ip6tables), records restores, and fails the commands listed.
type fakeTables struct {
	tables   map[string]string
	fail     map[string]bool // command name, or name + " -t nat"
	restored []string        // command names
}

func (f *fakeTables) Run(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	if f.fail[name] || f.fail[strings.Join(append([]string{name}, args...), " ")] {
		return nil, errors.New(name + ": can't initialize table `nat': Table does not exist")
	}
	tool := name[:strings.Index(name, "-")]
	switch {
	case strings.HasSuffix(name, "-save"):
		return []byte(f.tables[tool]), nil
	case strings.HasSuffix(name, "-restore"):
		f.restored = append(f.restored, name)
		f.tables[tool] = string(stdin)
		return nil, nil
	}
	return nil, errors.New("unexpected command " + name)
}

func sysctl(v string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if name != disableIPv6 {
			return nil, errors.New("unexpected file " + name)
		}
		if v == "" {
			return nil, fs.ErrNotExist
		}
		return []byte(v + "\n"), nil
	}
}

// TestInstallFamilies: IPv6 is programmed next to IPv4 when the namespace
// has it; otherwise the IPv4 rules alone are installed, the pod is not
// failed (unless IPv6 mode is on) and one log line says why.
func TestInstallFamilies(t *testing.T) {
	both := []string{"iptables-nft-restore", "ip6tables-nft-restore"}
	v4 := []string{"iptables-nft-restore"}
	for _, tc := range []struct {
		name     string
		ipv6     IPv6Mode
		sysctl   string // disable_ipv6; "" means the file does not exist
		fail     []string
		want     []string // restores
		wantErr  string
		wantLog  string // a line of the log, level and message and reason
		wantSkip string // Plan's IPv6Skipped
	}{
		{name: "dual-stack", sysctl: "0", want: both, wantLog: `level=INFO msg="nat rules installed" family=IPv6`},
		{name: "dual-stack on", ipv6: IPv6On, sysctl: "0", want: both},
		{name: "disabled by sysctl", sysctl: "1", want: v4,
			wantLog:  `level=INFO msg="IPv6 nat rules skipped" reason="IPv6 is disabled in the network namespace (net.ipv6.conf.all.disable_ipv6=1)"`,
			wantSkip: "disable_ipv6=1"},
		{name: "kernel without IPv6", want: v4,
			wantLog: `level=INFO msg="IPv6 nat rules skipped" reason="the kernel has no IPv6`, wantSkip: "kernel has no IPv6"},
		{name: "no ip6tables nat", sysctl: "0", fail: []string{"ip6tables-nft-save -t nat"}, want: v4,
			wantLog:  `level=WARN msg="IPv6 nat rules skipped: IPv6 connections bypass the proxy" reason="ip6tables cannot read the nat table: ip6tables-nft-save: can't initialize table`,
			wantSkip: "ip6tables cannot read the nat table"},
		{name: "ip6tables restore fails", sysctl: "0", fail: []string{"ip6tables-nft-restore --wait"}, want: v4,
			wantLog: `level=WARN msg="IPv6 nat rules skipped: IPv6 connections bypass the proxy" reason="ip6tables cannot program the nat table" err="iptables: IPv6: restore the nat table`},
		{name: "off", ipv6: IPv6Off, sysctl: "0", want: v4,
			wantLog: `level=INFO msg="IPv6 nat rules skipped" reason="IPv6 mode is off"`, wantSkip: "mode is off"},
		{name: "on without IPv6", ipv6: IPv6On, sysctl: "1", wantErr: "iptables: IPv6 mode is on but IPv6 is disabled in the network namespace"},
		{name: "on without ip6tables nat", ipv6: IPv6On, sysctl: "0", fail: []string{"ip6tables-nft-save -t nat"}, wantErr: "iptables: read the IPv6 nat table: "},
		{name: "on and restore fails", ipv6: IPv6On, sysctl: "0", fail: []string{"ip6tables-nft-restore --wait"}, want: v4, wantErr: "iptables: IPv6: restore the nat table: "},
		// The IPv4 table is required whatever the IPv6 mode.
		{name: "no iptables nat", sysctl: "0", fail: []string{"iptables-nft-save -t nat"}, wantErr: "iptables: read the nat table: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTables{tables: map[string]string{}, fail: map[string]bool{}}
			for _, c := range tc.fail {
				f.fail[c] = true
			}
			var log bytes.Buffer
			in := &Installer{Runner: f, Log: slog.New(slog.NewTextHandler(&log, nil)), ReadFile: sysctl(tc.sysctl)}
			c := defaults()
			c.IPv6 = tc.ipv6
			c.SubnetsToIgnore, _ = ParseSubnets("10.0.0.0/8,fd00::/8")
			if tc.wantSkip != "" {
				p, err := in.Plan(context.Background(), ModeNFT, c)
				if err != nil || p.IPv6 != "" || !strings.Contains(p.IPv6Skipped, tc.wantSkip) || p.IPv4 == "" {
					t.Errorf("Plan: %v, IPv6 %q, skipped %q; want it skipped with %q", err, p.IPv6, p.IPv6Skipped, tc.wantSkip)
				}
			}
			err := in.Install(context.Background(), ModeNFT, c)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Install: %v, want error %q", err, tc.wantErr)
			}
			if strings.Join(f.restored, " ") != strings.Join(tc.want, " ") {
				t.Errorf("restored %v, want %v", f.restored, tc.want)
			}
			if tc.wantLog != "" && !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, log.String())
			}
			if n := strings.Count(log.String(), "IPv6 nat rules skipped"); n > 1 {
				t.Errorf("IPv6 skipped logged %d times:\n%s", n, log.String())
			}
			// The IPv6 table got IPv6 subnets only, and the IPv4 one IPv4 only.
			if v6 := f.tables["ip6tables"]; strings.Contains(v6, "10.0.0.0/8") || (v6 != "" && !strings.Contains(v6, "-d fd00::/8")) {
				t.Errorf("IPv6 table:\n%s", v6)
			}
			if v4 := f.tables["iptables"]; strings.Contains(v4, "fd00::") {
				t.Errorf("IPv4 table:\n%s", v4)
			}
		})
	}
}

// TestDetectModeCountsBothFamilies: rules in the IPv6 tables count towards
// their backend, and ip6tables failing (no IPv6) does not make a backend
// unusable.
func TestDetectModeCountsBothFamilies(t *testing.T) {
	rules := func(n int) string { return strings.Repeat("-A FORWARD -j ACCEPT\n", n) }
	for _, tc := range []struct {
		name   string
		tables map[string]string
		fail   []string
		want   Mode
	}{
		{"tie is nft", map[string]string{}, nil, ModeNFT},
		{"legacy IPv6 rules tip it", map[string]string{"iptables-nft-save": rules(1), "iptables-legacy-save": rules(1), "ip6tables-legacy-save": rules(1)}, nil, ModeLegacy},
		{"nft without ip6tables", map[string]string{"iptables-nft-save": rules(1)}, []string{"ip6tables-nft-save", "ip6tables-legacy-save"}, ModeNFT},
		{"nft unusable", map[string]string{}, []string{"iptables-nft-save"}, ModeLegacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runnerFunc(func(name string) ([]byte, error) {
				for _, f := range tc.fail {
					if f == name {
						return nil, errors.New(name + " failed")
					}
				}
				return []byte(tc.tables[name]), nil
			})
			in := &Installer{Runner: r, Log: slog.New(slog.DiscardHandler)}
			if got, err := in.DetectMode(context.Background()); err != nil || got != tc.want {
				t.Errorf("DetectMode = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

type runnerFunc func(name string) ([]byte, error)

func (f runnerFunc) Run(_ context.Context, _ []byte, name string, _ ...string) ([]byte, error) {
	return f(name)
}
