// Command crasher is a test plugin whose command crashes the process, and
// that calls itself "crasher" whatever its file name.
package main

import (
	"context"
	"os"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
)

type crasher struct{}

func (crasher) Info() sdk.Info          { return sdk.Info{Name: "crasher", Version: "0.0.1"} }
func (crasher) Commands() []sdk.Command { return []sdk.Command{{Name: "crash"}} }
func (crasher) Run(context.Context, *sdk.Invocation) error {
	os.Exit(3)
	return nil
}

func main() { sdk.Serve(crasher{}) }
