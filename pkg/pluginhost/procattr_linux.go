//go:build linux

package pluginhost

import (
	"os/exec"
	"syscall"
)

// dieWithHost has the kernel kill the plugin when its host dies, even when
// the host cannot Close it (SIGKILL, OOM, a crash): no orphan is left
// running. (Strictly, when the host's thread that started it ends; Go's
// runtime does not end threads it did not lock.)
func dieWithHost(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
