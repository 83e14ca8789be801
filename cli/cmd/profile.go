package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

type profileOptions struct {
	template      bool
	openAPI       string
	clusterDomain string
}

func newProfileCmd(o *Options) *cobra.Command {
	po := &profileOptions{}
	c := &cobra.Command{
		Use:   "profile SERVICE (--template | --open-api FILE)",
		Short: "Write a ServiceProfile for a Service",
		Long: `profile prints a ServiceProfile (serviceprofiles.conduit.dev/v1alpha2) for SERVICE in
-n's namespace, to edit and apply with kubectl:

  --template        a commented example with every field
  --open-api FILE   one route per operation of an OpenAPI 3 or Swagger 2 spec (JSON or
                    YAML; "-" reads standard input). An operation's x-conduit-retryable
                    (boolean) and x-conduit-timeout (duration) set isRetryable and timeout.

The profile is named after the Service's fully qualified name. See docs/destination.md.`,
		Example: `  mesh profile --template web -n emojivoto > web-profile.yaml
  mesh profile --open-api books.swagger.json books -n bookapp | kubectl apply -f -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if po.template == (po.openAPI != "") {
				return errors.New("profile: pass exactly one of --template or --open-api FILE")
			}
			ns := o.Namespace
			if ns == "" {
				ns = "default"
			}
			svc := args[0]
			for what, v := range map[string]string{"service": svc, "namespace": ns} {
				if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
					return fmt.Errorf("profile: %s %q: %s", what, v, strings.Join(errs, "; "))
				}
			}
			if po.template {
				return renderProfileTemplate(cmd.OutOrStdout(), svc, ns, po.clusterDomain)
			}
			spec, err := readSpecFile(po.openAPI, cmd.InOrStdin())
			if err != nil {
				return err
			}
			sp, err := profileFromOpenAPI(spec, svc, ns, po.clusterDomain)
			if err != nil {
				return err
			}
			b, err := yaml.Marshal(sp)
			if err != nil {
				return fmt.Errorf("profile: encode: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f := c.Flags()
	f.BoolVar(&po.template, "template", false, "print a commented ServiceProfile template")
	f.StringVar(&po.openAPI, "open-api", "", "generate the routes from this OpenAPI/Swagger spec (JSON or YAML, - for stdin)")
	f.StringVar(&po.clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	return c
}

var profileTemplate = template.Must(template.New("profile").Parse(`# ServiceProfile of {{.Service}}.{{.Namespace}}: edit, then 'kubectl apply -f' this file.
# The proxies match a request against the routes in order; the first match wins.
# Reference: docs/destination.md.
apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata:
  # Must be the Service's fully qualified name.
  name: {{.FQDN}}
  namespace: {{.Namespace}}
spec:
  routes:
  - name: GET /books/{id}        # the "route" label of the route's metrics
    # A condition sets exactly one of: method, pathRegex, all, any, not.
    condition:
      all:
      - method: GET
      - pathRegex: /books/[^/]*  # RE2, anchored at both ends
    # Classify responses: the first class whose condition matches wins.
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true
    isRetryable: true            # retry failures, within the retry budget
    timeout: 300ms               # non-negative duration
  - name: POST /books
    condition:
      all:
      - method: POST
      - pathRegex: /books
    timeout: 2s
  # Retries allowed on top of the original requests.
  retryBudget:
    retryRatio: 0.2              # 20 % extra requests at most (0 to 1)
    minRetriesPerSecond: 10      # allowed whatever the ratio
    ttl: 10s                     # window over which requests are counted
  # Traffic split: send a share of the traffic to other Services (relative weights).
  # dstOverrides:
  # - authority: {{.FQDN}}:80
  #   weight: 900
  # - authority: {{.Service}}-canary.{{.Namespace}}.svc.{{.Domain}}:80
  #   weight: 100
`))

func renderProfileTemplate(w io.Writer, svc, ns, domain string) error {
	return profileTemplate.Execute(w, map[string]string{
		"Service": svc, "Namespace": ns, "Domain": domain, "FQDN": svc + "." + ns + ".svc." + domain,
	})
}

func readSpecFile(path string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("profile: read OpenAPI spec: %w", err)
	}
	return b, nil
}

// openAPIDoc is the part of an OpenAPI 3 / Swagger 2 document profiles use.
type openAPIDoc struct {
	Swagger  string                                `json:"swagger"`
	OpenAPI  string                                `json:"openapi"`
	BasePath string                                `json:"basePath"`
	Paths    map[string]map[string]json.RawMessage `json:"paths"`
}

type openAPIOperation struct {
	Retryable *bool  `json:"x-conduit-retryable"`
	Timeout   string `json:"x-conduit-timeout"`
}

var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

var pathParam = regexp.MustCompile(`\{[^/{}]+\}`)

// profileFromOpenAPI builds one route per operation of the spec.
func profileFromOpenAPI(spec []byte, svc, ns, domain string) (*v1alpha2.ServiceProfile, error) {
	j, err := yaml.YAMLToJSON(spec)
	if err != nil {
		return nil, fmt.Errorf("profile: the OpenAPI spec is neither JSON nor YAML: %w", err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("profile: decode OpenAPI spec: %w", err)
	}
	if doc.Swagger == "" && doc.OpenAPI == "" {
		return nil, errors.New("profile: not an OpenAPI document (no \"openapi\" or \"swagger\" version field)")
	}
	if len(doc.Paths) == 0 {
		return nil, errors.New("profile: the OpenAPI spec has no paths")
	}
	base := strings.TrimSuffix(doc.BasePath, "/")
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	sp := &v1alpha2.ServiceProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.SchemeGroupVersion.String(), Kind: v1alpha2.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: svc + "." + ns + ".svc." + domain, Namespace: ns},
	}
	for _, p := range paths {
		full := base + p
		methods := make([]string, 0, len(doc.Paths[p]))
		for m := range doc.Paths[p] {
			if httpMethods[strings.ToLower(m)] {
				methods = append(methods, m)
			}
		}
		sort.Strings(methods)
		for _, m := range methods {
			var op openAPIOperation
			if err := json.Unmarshal(doc.Paths[p][m], &op); err != nil {
				return nil, fmt.Errorf("profile: paths[%q].%s: %w", p, m, err)
			}
			method := strings.ToUpper(m)
			r := v1alpha2.RouteSpec{
				Name: method + " " + full,
				Condition: &v1alpha2.RequestMatch{All: []v1alpha2.RequestMatch{
					{Method: method}, {PathRegex: pathRegex(full)},
				}},
			}
			if op.Retryable != nil {
				r.IsRetryable = *op.Retryable
			}
			if op.Timeout != "" {
				d, err := time.ParseDuration(op.Timeout)
				if err != nil || d < 0 {
					return nil, fmt.Errorf("profile: paths[%q].%s.x-conduit-timeout: %q is not a non-negative duration such as 300ms", p, m, op.Timeout)
				}
				r.Timeout = op.Timeout
			}
			sp.Spec.Routes = append(sp.Spec.Routes, r)
		}
	}
	if len(sp.Spec.Routes) == 0 {
		return nil, errors.New("profile: the OpenAPI spec has no operations")
	}
	return sp, nil
}

// pathRegex turns "/books/{id}" into "/books/[^/]*".
func pathRegex(path string) string {
	var b strings.Builder
	last := 0
	for _, loc := range pathParam.FindAllStringIndex(path, -1) {
		b.WriteString(regexp.QuoteMeta(path[last:loc[0]]))
		b.WriteString("[^/]*")
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(path[last:]))
	return b.String()
}
