// Command mesh is the Conduit command-line interface.
package main

import (
	"os"

	"github.com/conduit-mesh/conduit/cli/cmd"
)

func main() {
	os.Exit(cmd.Execute())
}
