package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	"github.com/conduit-mesh/conduit/plugin-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"sigs.k8s.io/yaml"
)

// Start serves ext in-process and returns a client of it. Everything stops
// when the test ends.
func Start(t testing.TB, ext sdk.Extension) *client.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	sdk.RegisterServices(s, ext)
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///sdktest",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("sdktest: dial: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
	})
	return client.New(conn, "sdktest")
}

// Options tune Conformance.
type Options struct {
	// InstallValues are passed to Install and Uninstall.
	InstallValues map[string]any
	// Kube is passed to Check; leave empty when the checks need no cluster
	// or set SkipChecks.
	Kube       sdk.KubeFlags
	SkipChecks bool
	// Pod is the JSON of the pod given to PatchPod; a minimal pod by default.
	Pod []byte
	// Timeout of each call (default 10s).
	Timeout time.Duration
}

const defaultPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"sdktest","namespace":"default","annotations":{}},` +
	`"spec":{"containers":[{"name":"app","image":"app:1"}]}}`

// Conformance serves ext and checks each capability it declares: Info is
// valid; commands have names; Install and Uninstall render valid manifests;
// checks have the shape of `mesh check -o json`; the injector hook returns a
// valid JSON patch; the destination hook answers.
func Conformance(t *testing.T, ext sdk.Extension, opts Options) {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Pod == nil {
		opts.Pod = []byte(defaultPod)
	}
	c := Start(t, ext)
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		t.Cleanup(cancel)
		return ctx
	}
	if err := ext.Info().Validate(); err != nil {
		t.Fatalf("Info: %v", err)
	}
	info, err := c.Info(ctx(t))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	t.Run("commands", func(t *testing.T) {
		if !info.Has(client.Commands) {
			t.Skip("not a Commander")
		}
		if len(info.Commands) == 0 {
			t.Error("Commands() lists no command: `mesh help` would show nothing")
		}
		for _, cmd := range info.Commands {
			if cmd.Name == "" || strings.ContainsAny(cmd.Name, " \t") {
				t.Errorf("command name %q must be one word", cmd.Name)
			}
			switch cmd.Name {
			case "install", "uninstall", "check":
				if info.Has(client.Install) || info.Has(client.Checks) {
					t.Errorf("command %q is shadowed by the host's %s for Installers and Checkers", cmd.Name, cmd.Name)
				}
			}
		}
	})
	t.Run("install", func(t *testing.T) {
		if !info.Has(client.Install) {
			t.Skip("not an Installer")
		}
		req := sdk.InstallRequest{Values: opts.InstallValues}
		out, err := c.Install(ctx(t), req)
		if err != nil {
			t.Fatalf("Install: %v", err)
		}
		if err := ValidateManifests(out); err != nil {
			t.Errorf("Install: %v", err)
		}
		out, err = c.Uninstall(ctx(t), req)
		if err != nil {
			t.Fatalf("Uninstall: %v", err)
		}
		if err := ValidateManifests(out); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})
	t.Run("checks", func(t *testing.T) {
		if !info.Has(client.Checks) {
			t.Skip("not a Checker")
		}
		if opts.SkipChecks {
			t.Skip("Options.SkipChecks")
		}
		cats, err := c.Check(ctx(t), opts.Kube)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		b, err := json.Marshal(cats)
		if err != nil {
			t.Fatalf("Check: marshal: %v", err)
		}
		if err := ValidateCheckJSON(b); err != nil {
			t.Errorf("Check: %v", err)
		}
	})
	t.Run("injector-hook", func(t *testing.T) {
		if !info.Has(client.InjectorHook) {
			t.Skip("not an InjectorHook")
		}
		if _, err := c.PatchPod(ctx(t), &sdk.PodPatchRequest{Pod: opts.Pod, Namespace: "default"}); err != nil {
			t.Errorf("PatchPod: %v", err)
		}
	})
	t.Run("destination-hook", func(t *testing.T) {
		if !info.Has(client.DestinationHook) {
			t.Skip("not a DestinationHook")
		}
		eps := []sdk.Endpoint{{Address: "10.0.0.1:8080", PodName: "web-0", PodNamespace: "default"}}
		md, err := c.AnnotateEndpoints(ctx(t), "web.default.svc.cluster.local:8080", eps)
		if err != nil {
			t.Fatalf("AnnotateEndpoints: %v", err)
		}
		for addr := range md {
			if addr != eps[0].Address {
				t.Errorf("AnnotateEndpoints: metadata for %q, which is not an endpoint of the request", addr)
			}
		}
	})
}

// ValidateCheckJSON checks that b is the JSON of `mesh check -o json`'s
// categories (docs/check-json.md): [{"categoryName", "checks":
// [{"description", "result": success|warning|error|skipped, "error", "hint"}]}],
// with no unknown field, and a hint on every warning and error.
func ValidateCheckJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cats []sdk.CheckCategory
	if err := dec.Decode(&cats); err != nil {
		return fmt.Errorf("sdktest: check JSON: %w", err)
	}
	var errs []error
	for i, c := range cats {
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("category %d has no name", i))
		}
		for j, r := range c.Checks {
			if r.Description == "" {
				errs = append(errs, fmt.Errorf("category %q check %d has no description", c.Name, j))
			}
			switch r.Status {
			case sdk.StatusOK, sdk.StatusSkipped:
			case sdk.StatusWarn, sdk.StatusFail:
				if r.Hint == "" {
					errs = append(errs, fmt.Errorf("category %q check %q is %s without a hint saying what to do", c.Name, r.Description, r.Status))
				}
			default:
				errs = append(errs, fmt.Errorf("category %q check %q has result %q, not success, warning, error or skipped", c.Name, r.Description, r.Status))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sdktest: check JSON: %w", err)
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// ValidateManifests checks that b is multi-document YAML of Kubernetes
// objects, each with apiVersion, kind and metadata.name, and at least one.
func ValidateManifests(b []byte) error {
	n := 0
	for i, doc := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return fmt.Errorf("sdktest: manifest document %d: %w", i, err)
		}
		if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
			return fmt.Errorf("sdktest: manifest document %d lacks apiVersion, kind or metadata.name", i)
		}
		n++
	}
	if n == 0 {
		return errors.New("sdktest: no manifest rendered")
	}
	return nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
