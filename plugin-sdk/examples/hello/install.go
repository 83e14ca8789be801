package main

import (
	"context"
	"embed"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/chart"
)

// DefaultNamespace is where `mesh hello install` installs by default.
const DefaultNamespace = "conduit-hello"

//go:embed all:charts/hello
var chartFiles embed.FS

func (hello) Install(_ context.Context, req sdk.InstallRequest) ([]byte, error) {
	return render(req, false)
}

func (hello) Uninstall(_ context.Context, req sdk.InstallRequest) ([]byte, error) {
	return render(req, true)
}

func render(req sdk.InstallRequest, uninstall bool) ([]byte, error) {
	ns := req.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return chart.Render(chartFiles, "charts/hello", chart.Options{ReleaseName: "hello", Namespace: ns, Values: req.Values, Uninstall: uninstall})
}
