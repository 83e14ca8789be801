// Package sdktest is a test harness for extension authors: it serves an
// extension in-process over a real gRPC connection, and checks that every
// capability the extension declares answers and produces well-formed output
// (check JSON, manifests, JSON patches).
//
//	func TestConformance(t *testing.T) {
//		sdktest.Conformance(t, myExtension{}, sdktest.Options{})
//	}
package sdktest
