package clikit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
)

// TidyUsageErrors makes the usage errors of every command under root say
// which command they are about and what it accepts, on one line:
//
//   - a wrong flag or flag value: "mesh check: unknown flag: --bogus (see
//     'mesh check --help')" (pflag's message alone named no command);
//   - a wrong number of arguments: "mesh identity: accepts 1 arg(s),
//     received 0 (usage: mesh identity POD [flags])";
//   - an unknown subcommand of a group of commands (mesh extensions bogus,
//     mesh completion bogus) is an error, not its help with exit status 0.
func TidyUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.HasParent() && !c.Runnable() && c.HasAvailableSubCommands() {
			c.Args = cobra.NoArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		if c.Args == nil {
			return
		}
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			err := args(cmd, a)
			if err == nil || strings.Contains(err.Error(), cmd.CommandPath()) {
				return err
			}
			return fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())
		}
	}
	walk(root)
}

// KubeconfigError says which kubeconfig files and context failed to load:
// client-go's message named neither, and when $KUBECONFIG or --kubeconfig
// named no file it spoke of KUBERNETES_MASTER or of a bare stat error.
func KubeconfigError(rules *clientcmd.ClientConfigLoadingRules, context string, err error) error {
	files := rules.GetLoadingPrecedence()
	from := "the default"
	switch {
	case rules.ExplicitPath != "":
		from = "--kubeconfig"
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		from = "$" + clientcmd.RecommendedConfigPathEnvVar
	}
	where := fmt.Sprintf("kubeconfig %s (%s)", strings.Join(files, string(filepath.ListSeparator)), from)
	missing := 0
	for _, f := range files {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			missing++
		}
	}
	if len(files) > 0 && missing == len(files) {
		return fmt.Errorf("%s does not exist: set --kubeconfig or $KUBECONFIG to the kubeconfig of your cluster", where)
	}
	if context != "" {
		where += fmt.Sprintf(", context %q", context)
	}
	return fmt.Errorf("load %s: %w ('kubectl config get-contexts' lists the contexts; set --kubeconfig or $KUBECONFIG, and --context if needed)", where, err)
}

// Unreachable reports whether err is a call that got no answer from the
// Kubernetes API server at all (connection refused, timeout, DNS, TLS): the
// HTTP client's *url.Error, which client-go returns as it is. An answer, even
// an error (a Status: forbidden, not found, no endpoints), is not; nor is the
// user's interrupt.
func Unreachable(err error) bool {
	var u *url.Error
	return errors.As(err, &u) && !errors.Is(err, context.Canceled)
}

// APIServerError says that the API server at server, of the kubeconfig
// context (empty: not named), could not be reached, with err (what the
// client saw) wrapped: a failure of the cluster, not of what was asked of it.
func APIServerError(server, context string, err error) error {
	where := server
	if context != "" {
		where += fmt.Sprintf(" (kubeconfig context %q)", context)
	}
	return fmt.Errorf("cannot reach the Kubernetes API server %s: %w (is the cluster running, and is it the cluster of your context? kubectl config current-context)", where, err)
}
