// Package clikit holds what mesh and its extensions' command-line tools share
// so that they fail alike: usage errors that name the command and what it
// accepts, and kubeconfig errors that name the files and context.
package clikit
