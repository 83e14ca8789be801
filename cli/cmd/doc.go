// Package cmd implements the commands of the `mesh` CLI. Each command lives
// in its own file and is registered in NewRootCmd; commands an extension
// provides are run through the plugin SDK (`mesh <extension> ...`).
package cmd
