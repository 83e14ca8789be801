//go:build !linux

package pluginhost

import "os/exec"

// dieWithHost does nothing where the kernel has no parent-death signal: the
// host must Close its plugins.
func dieWithHost(*exec.Cmd) {}
