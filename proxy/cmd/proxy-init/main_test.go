package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fakeRunner serves iptables-save and ip6tables-save each from its own
// table and records restores.
type fakeRunner struct {
	tables   map[string]string // by tool: iptables, ip6tables
	restored []string
	commands []string // the restore commands
}

func (f *fakeRunner) Run(_ context.Context, stdin []byte, name string, _ ...string) ([]byte, error) {
	if f.tables == nil {
		f.tables = map[string]string{}
	}
	tool, _, _ := strings.Cut(name, "-")
	switch {
	case strings.HasSuffix(name, "-save"):
		return []byte(f.tables[tool]), nil
	case strings.HasSuffix(name, "-restore"):
		f.restored = append(f.restored, string(stdin))
		f.commands = append(f.commands, name)
		f.tables[tool] = string(stdin)
		return nil, nil
	}
	return nil, errors.New("unexpected command " + name)
}

// ipv6Sysctl answers net.ipv6.conf.all.disable_ipv6 (v: "0" or "1"; ""
// for a kernel without IPv6).
func ipv6Sysctl(v string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) {
		if v == "" {
			return nil, fs.ErrNotExist
		}
		return []byte(v + "\n"), nil
	}
}

func TestDryRunGolden(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		disableIPv6 string
	}{
		{"dry-run-defaults", []string{"--dry-run", "--iptables-mode=nft"}, "0"},
		{"dry-run-skips", []string{"--dry-run", "--iptables-mode=legacy", "--inbound-ports-to-ignore=22,8000-8100",
			"--outbound-ports-to-ignore=443,3306", "--subnets-to-ignore=10.0.0.0/8,169.254.169.254,fd00::/8,fd00:ec2::254", "--proxy-uid=3000",
			"--incoming-proxy-port=5143", "--outgoing-proxy-port=5140"}, "0"},
		{"dry-run-ipv6-disabled", []string{"--dry-run", "--iptables-mode=nft"}, "1"},
		{"dry-run-ipv6-off", []string{"--dry-run", "--iptables-mode=nft", "--ipv6=off"}, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			f := &fakeRunner{}
			cmd := newCmd(&out, f, ipv6Sysctl(tc.disableIPv6))
			cmd.SetArgs(append(tc.args, "--log-level=error"))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if len(f.restored) != 0 {
				t.Error("dry run restored a table")
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
}

// TestInstall: both families are restored, twice the same; without IPv6
// in the pod (or with --ipv6=off) the IPv4 table alone, and proxy-init
// still succeeds; with --ipv6=on it fails instead.
func TestInstall(t *testing.T) {
	both := "iptables-nft-restore ip6tables-nft-restore"
	for _, tc := range []struct {
		name, disableIPv6 string
		args              []string
		want              string // restore commands of one run
		wantErr           string
	}{
		{name: "dual-stack", disableIPv6: "0", want: both},
		{name: "IPv6 disabled", disableIPv6: "1", want: "iptables-nft-restore"},
		{name: "no IPv6 in the kernel", disableIPv6: "", want: "iptables-nft-restore"},
		{name: "off", disableIPv6: "0", args: []string{"--ipv6=off"}, want: "iptables-nft-restore"},
		{name: "on", disableIPv6: "0", args: []string{"--ipv6=on"}, want: both},
		{name: "on without IPv6", disableIPv6: "1", args: []string{"--ipv6=on"}, wantErr: "IPv6 mode is on but IPv6 is disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRunner{}
			for i := 0; i < 2; i++ {
				cmd := newCmd(&bytes.Buffer{}, f, ipv6Sysctl(tc.disableIPv6))
				cmd.SetArgs(append([]string{"--iptables-mode=nft", "--log-level=error", "--subnets-to-ignore=10.0.0.0/8,fd00::/8"}, tc.args...))
				err := cmd.Execute()
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want %q", err, tc.wantErr)
					}
					if len(f.restored) != 0 {
						t.Errorf("restored %v despite the error", f.commands)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Join(f.commands, " "); got != tc.want+" "+tc.want {
				t.Fatalf("restores %q, want %q twice", got, tc.want)
			}
			n := len(f.restored) / 2
			for i := range n {
				if f.restored[i] != f.restored[i+n] {
					t.Errorf("second run restored something else:\n%s\nvs\n%s", f.restored[i], f.restored[i+n])
				}
			}
			if strings.Contains(f.tables["iptables"], "fd00::") || strings.Contains(f.tables["ip6tables"], "10.0.0.0") {
				t.Errorf("a subnet in the other family's table:\n%s\n%s", f.tables["iptables"], f.tables["ip6tables"])
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--inbound-ports-to-ignore=ssh"}, "--inbound-ports-to-ignore"},
		{[]string{"--outbound-ports-to-ignore=70000"}, "--outbound-ports-to-ignore"},
		{[]string{"--subnets-to-ignore=10.0.0.0/40"}, "--subnets-to-ignore"},
		{[]string{"--iptables-mode=ebpf"}, "accepted: auto, legacy, nft"},
		{[]string{"--ipv6=yes"}, "--ipv6: iptables: unknown IPv6 mode \"yes\" (accepted: auto, on, off)"},
		{[]string{"--subnets-to-ignore=::ffff:10.0.0.1"}, "write it as IPv4: 10.0.0.1"},
		{[]string{"--proxy-uid=0"}, "UID must not be 0"},
		{[]string{"--incoming-proxy-port=4140"}, "both 4140"},
	} {
		f := &fakeRunner{}
		cmd := newCmd(&bytes.Buffer{}, f, ipv6Sysctl("0"))
		cmd.SetArgs(append(tc.args, "--log-level=error"))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
		if len(f.restored) != 0 {
			t.Errorf("%v: restored despite the error", tc.args)
		}
	}
}
