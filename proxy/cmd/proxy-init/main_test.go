package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fakeRunner serves iptables-save from a fixed table and records restores.
type fakeRunner struct {
	table    string
	restored []string
}

func (f *fakeRunner) Run(_ context.Context, stdin []byte, name string, _ ...string) ([]byte, error) {
	switch {
	case strings.HasSuffix(name, "-save"):
		return []byte(f.table), nil
	case strings.HasSuffix(name, "-restore"):
		f.restored = append(f.restored, string(stdin))
		f.table = string(stdin)
		return nil, nil
	}
	return nil, errors.New("unexpected command " + name)
}

func TestDryRunGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"dry-run-defaults", []string{"--dry-run", "--iptables-mode=nft"}},
		{"dry-run-skips", []string{"--dry-run", "--iptables-mode=legacy", "--inbound-ports-to-ignore=22,8000-8100",
			"--outbound-ports-to-ignore=443,3306", "--subnets-to-ignore=10.0.0.0/8,169.254.169.254", "--proxy-uid=3000",
			"--incoming-proxy-port=5143", "--outgoing-proxy-port=5140"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			f := &fakeRunner{}
			cmd := newCmd(&out, f)
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

func TestInstallTwice(t *testing.T) {
	f := &fakeRunner{}
	for i := 0; i < 2; i++ {
		cmd := newCmd(&bytes.Buffer{}, f)
		cmd.SetArgs([]string{"--iptables-mode=nft", "--log-level=error"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.restored) != 2 || f.restored[0] != f.restored[1] {
		t.Errorf("restores differ or are missing: %q", f.restored)
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
		{[]string{"--proxy-uid=0"}, "UID must not be 0"},
		{[]string{"--incoming-proxy-port=4140"}, "both 4140"},
	} {
		f := &fakeRunner{}
		cmd := newCmd(&bytes.Buffer{}, f)
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
