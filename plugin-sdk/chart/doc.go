// Package chart renders a Helm chart embedded in an extension's binary, for
// an sdk.Installer: `mesh <name> install` prints the manifests for
// `kubectl apply -f -`, with no Helm release and no file on disk.
//
//	//go:embed all:charts/hello
//	var files embed.FS
//
//	func (e ext) Install(ctx context.Context, req sdk.InstallRequest) ([]byte, error) {
//		return chart.Render(files, "charts/hello", chart.Options{Namespace: "conduit-hello", Values: req.Values})
//	}
//
// It is a separate package so that the core SDK does not depend on Helm.
package chart
