package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/metricsapi"
	"github.com/conduit-mesh/conduit/pkg/clikit"
)

// DefaultVizNamespace is where `mesh viz install` puts the extension.
const DefaultVizNamespace = "conduit-viz"

// VizNamespaceFlag names the namespace of viz, for the commands that read it
// and for `mesh viz check` (which mesh serves: the plugin declares it).
const VizNamespaceFlag = "viz-namespace"

// VizNamespaceUsage is the help of --viz-namespace.
const VizNamespaceUsage = "namespace of the viz extension (default: the namespace labelled " + vizSelector + ", else " + DefaultVizNamespace + ")"

// API is what the query commands need from the metrics API.
type API interface {
	Stat(context.Context, metrics.StatRequest) ([]metrics.StatRow, error)
	Edges(context.Context, metrics.EdgesRequest) ([]metrics.Edge, error)
	Routes(context.Context, metrics.RoutesRequest) ([]metrics.RouteRow, error)
}

// Env is what a command runs with: the user's streams and cluster selection.
type Env struct {
	Out, Err io.Writer
	In       io.Reader
	Kube     KubeFlags
	// NewAPI returns the metrics API client and the default namespace, for
	// vizNamespace (--viz-namespace; empty: find it, see ResolveVizNamespace);
	// nil connects to the cluster and goes through the API server's service
	// proxy.
	NewAPI func(ctx context.Context, k KubeFlags, vizNamespace string) (API, string, error)
	// NewTap returns what tap and top need; nil connects to the cluster and
	// port-forwards to the proxies.
	NewTap func(k KubeFlags) (*TapEnv, error)
}

func (e *Env) api(ctx context.Context, vizNS string) (API, string, error) {
	if e.NewAPI != nil {
		return e.NewAPI(ctx, e.Kube, vizNS)
	}
	k, err := Connect(e.Kube)
	if err != nil {
		return nil, "", err
	}
	ns, err := ResolveVizNamespace(ctx, k.Client, vizNS)
	if err != nil {
		return nil, "", k.explain(err)
	}
	return kubeAPI{metricsapi.NewKubeClient(k.Client, ns), k}, k.Namespace, nil
}

// kubeAPI is the metrics API through the API server's service proxy, whose
// errors name the API server when it is the API server that did not answer.
// query checks a command's flags and its resource argument, before it
// connects (bad input says so first), then connects and resolves the
// resource in the namespace (-n, else the kubeconfig's).
func (e *Env) query(ctx context.Context, q *queryFlags, args []string, vizNS string) (API, string, metrics.Resource, error) {
	if err := q.check(); err != nil {
		return nil, "", metrics.Resource{}, err
	}
	if _, err := metrics.ParseResource(args, ""); err != nil {
		return nil, "", metrics.Resource{}, err
	}
	api, ns, err := e.api(ctx, vizNS)
	if err != nil {
		return nil, "", metrics.Resource{}, err
	}
	res, err := metrics.ParseResource(args, ns)
	if err != nil {
		return nil, "", metrics.Resource{}, err
	}
	return api, ns, res, nil
}

type kubeAPI struct {
	c *metricsapi.Client
	k *Kube
}

func (a kubeAPI) Stat(ctx context.Context, r metrics.StatRequest) ([]metrics.StatRow, error) {
	rows, err := a.c.Stat(ctx, r)
	return rows, a.k.explain(err)
}

func (a kubeAPI) Edges(ctx context.Context, r metrics.EdgesRequest) ([]metrics.Edge, error) {
	edges, err := a.c.Edges(ctx, r)
	return edges, a.k.explain(err)
}

func (a kubeAPI) Routes(ctx context.Context, r metrics.RoutesRequest) ([]metrics.RouteRow, error) {
	routes, err := a.c.Routes(ctx, r)
	return routes, a.k.explain(err)
}

// Commands are the subcommands the plugin serves, as it advertises them to
// mesh (install, uninstall and check are the SDK's Installer and Checker,
// which mesh serves: HostCommands).
var Commands = []struct{ Name, Short string }{
	{"stat", "Golden metrics (success rate, RPS, latency, TCP connections) of resources"},
	{"routes", "Per-route metrics of a service or workload, from its service profile"},
	{"edges", "Connections between workloads, with the identities mTLS authenticated"},
	{"tap", "Stream the live requests of a resource's proxies"},
	{"top", "The busiest paths of a resource, from its live requests"},
	{"dashboard", "Open the viz dashboard through a port-forward"},
}

// NewCommand builds the command tree `mesh viz ...`: run it with the
// arguments prefixed by "viz" (help and usage then read "mesh viz stat").
func NewCommand(env *Env) *cobra.Command {
	mesh := &cobra.Command{Use: "mesh", SilenceUsage: true, SilenceErrors: true}
	mesh.CompletionOptions.DisableDefaultCmd = true
	mesh.SetOut(env.Out)
	mesh.SetErr(env.Err)
	mesh.SetIn(env.In)
	mesh.AddCommand(newVizCmd(env))
	clikit.TidyUsageErrors(mesh)
	return mesh
}

func newVizCmd(env *Env) *cobra.Command {
	var vizNS string
	root := &cobra.Command{
		Use:   "viz",
		Short: "Metrics, edges and a dashboard for the Conduit mesh",
		Long: `viz reports the golden metrics of the mesh (success rate, requests per second,
latency, TCP connections) per resource, per edge and per route, from the proxies'
metrics, and serves a dashboard.

Install, check and remove it with:
  mesh viz install | kubectl apply -f -
  mesh viz check
  mesh viz uninstall | kubectl delete -f -`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(env.Out)
	root.SetErr(env.Err)
	root.SetIn(env.In)
	pf := root.PersistentFlags()
	pf.StringVar(&vizNS, VizNamespaceFlag, "", VizNamespaceUsage)
	pf.StringVar(&env.Kube.Kubeconfig, "kubeconfig", env.Kube.Kubeconfig, "path to the kubeconfig file")
	pf.StringVar(&env.Kube.Context, "context", env.Kube.Context, "kubeconfig context to use")
	pf.StringVarP(&env.Kube.Namespace, "namespace", "n", env.Kube.Namespace, "namespace of the resources (default: the context's)")
	root.AddCommand(newStatCmd(env, &vizNS), newEdgesCmd(env, &vizNS), newRoutesCmd(env, &vizNS), newTapCmd(env), newTopCmd(env), newDashboardCmd(env, &vizNS))
	root.AddCommand(newHostCmds()...)
	// cobra adds its help command to the root (mesh) only: mesh forwards
	// `mesh viz help ...` to the plugin, which answered "unknown command".
	root.AddCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about a command",
		RunE: func(_ *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return fmt.Errorf("viz: unknown command %q for \"mesh viz\" (see 'mesh viz --help')", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag() // as --help shows it
			return target.Help()
		},
	})
	return root
}

type queryFlags struct {
	all    bool
	output string
	window string
}

func (q *queryFlags) register(c *cobra.Command, all bool) {
	if all {
		c.Flags().BoolVarP(&q.all, "all-namespaces", "A", false, "report on every namespace")
	}
	c.Flags().StringVarP(&q.output, "output", "o", OutputTable, "output format: table, wide or json")
	c.Flags().StringVarP(&q.window, "time-window", "t", "1m", "time window of the metrics (10s to 24h)")
}

// check refuses a bad -o or -t before connecting: edges and routes sent a
// negative or malformed window to the cluster (or failed to reach it first).
func (q *queryFlags) check() error {
	if err := checkOutput(q.output); err != nil {
		return err
	}
	_, err := metrics.ParseWindow(q.window)
	return err
}

func newStatCmd(env *Env, vizNS *string) *cobra.Command {
	var q queryFlags
	var from, to, fromNS, toNS string
	c := &cobra.Command{
		Use:   "stat TYPE[/NAME] [NAME]",
		Short: "Golden metrics of resources: meshed pods, success rate, RPS, latency, TCP connections",
		Long: `stat shows the golden metrics of Kubernetes resources, computed by the viz metrics
API from the proxies' metrics over a time window. TYPE is one of deploy, pod, ns,
svc, sts, ds, job. Without --from/--to the metrics are of the traffic the resources
receive; --to limits them to the traffic the resources send to one resource, --from to
the traffic they receive from one.`,
		Example: `  mesh viz stat deploy -n emojivoto
  mesh viz stat deploy/web -n emojivoto -t 5m
  mesh viz stat ns
  mesh viz stat deploy -A -o wide
  mesh viz stat deploy -n emojivoto --to svc/emoji-svc
  mesh viz stat deploy -n emojivoto --from deploy/vote-bot -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, ns, res, err := env.query(cmd.Context(), &q, args, *vizNS)
			if err != nil {
				return err
			}
			req := metrics.StatRequest{Resource: res, AllNamespaces: q.all, Window: q.window}
			for _, p := range []struct {
				arg, ns string
				dst     **metrics.Resource
			}{{from, fromNS, &req.From}, {to, toNS, &req.To}} {
				if p.arg == "" {
					continue
				}
				if p.ns == "" {
					p.ns = ns
				}
				r, err := metrics.ParseResource([]string{p.arg}, p.ns)
				if err != nil {
					return err
				}
				*p.dst = &r
			}
			rows, err := api.Stat(cmd.Context(), req)
			if err != nil {
				return err
			}
			return WriteStat(env.Out, rows, q.output, q.all)
		},
	}
	q.register(c, true)
	c.Flags().StringVar(&from, "from", "", "only the traffic from this resource (TYPE/NAME)")
	c.Flags().StringVar(&to, "to", "", "only the traffic to this resource (TYPE/NAME)")
	c.Flags().StringVar(&fromNS, "from-namespace", "", "namespace of --from (default: -n)")
	c.Flags().StringVar(&toNS, "to-namespace", "", "namespace of --to (default: -n)")
	return c
}

func newEdgesCmd(env *Env, vizNS *string) *cobra.Command {
	var q queryFlags
	c := &cobra.Command{
		Use:   "edges TYPE[/NAME]",
		Short: "Connections between workloads with the client and server identities mTLS authenticated",
		Example: `  mesh viz edges deploy -n emojivoto
  mesh viz edges deploy/web -n emojivoto -o wide
  mesh viz edges po -A -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, _, res, err := env.query(cmd.Context(), &q, args, *vizNS)
			if err != nil {
				return err
			}
			edges, err := api.Edges(cmd.Context(), metrics.EdgesRequest{Resource: res, AllNamespaces: q.all, Window: q.window})
			if err != nil {
				return err
			}
			return WriteEdges(env.Out, edges, q.output)
		},
	}
	q.register(c, true)
	return c
}

func newRoutesCmd(env *Env, vizNS *string) *cobra.Command {
	var q queryFlags
	c := &cobra.Command{
		Use:   "routes (svc|deploy)/NAME",
		Short: "Per-route metrics of a service or a workload, by the routes of its service profile",
		Long: `routes shows the golden metrics of the requests to a service or a workload, per
route of the service's ServiceProfile ([DEFAULT]: the requests that matched none).

Routes are matched, and measured, by the client's proxy, against the profile of the
service it calls: the rows count the requests of meshed clients only (their
outbound metrics), not those of clients outside the mesh. For svc/NAME they are the
requests addressed to the service (NAME.NAMESPACE.svc.<cluster domain>, any port);
for a workload or a pod, the requests sent to its pods. The profile's routes that
had no traffic in the window are listed too (services only).`,
		Example: `  mesh viz routes svc/web-svc -n emojivoto
  mesh viz routes deploy/web -n emojivoto -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, _, res, err := env.query(cmd.Context(), &q, args, *vizNS)
			if err != nil {
				return err
			}
			routes, err := api.Routes(cmd.Context(), metrics.RoutesRequest{Resource: res, Window: q.window})
			if err != nil {
				return err
			}
			return WriteRoutes(env.Out, routes, q.output)
		},
	}
	q.register(c, false)
	return c
}
