package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
	"github.com/conduit-mesh/conduit/extensions/viz/tap"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/kubernetes"
)

// TapEnv is what tap and top need: the cluster and a way to reach proxies.
type TapEnv struct {
	Kube      kubernetes.Interface
	Dial      tap.Dialer
	Namespace string // default namespace
	// explain words the errors of Kube's calls (nil: as they are).
	explain func(error) error
}

func (te *TapEnv) wrap(err error) error {
	if te.explain == nil || err == nil {
		return err
	}
	return te.explain(err)
}

func (e *Env) tapEnv() (*TapEnv, error) {
	if e.NewTap != nil {
		return e.NewTap(e.Kube)
	}
	k, err := Connect(e.Kube)
	if err != nil {
		return nil, err
	}
	dial := func(ctx context.Context, t tap.Target) (grpc.ClientConnInterface, func(), error) {
		port, stop, _, err := portForward(k, t.Namespace, t.Name, "127.0.0.1", 0, tap.Port, e.Err)
		if err != nil {
			return nil, nil, err
		}
		conn, err := grpc.NewClient(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			stop()
			return nil, nil, err
		}
		return conn, func() { conn.Close(); stop() }, nil
	}
	return &TapEnv{Kube: k.Client, Dial: dial, Namespace: k.Namespace, explain: k.explain}, nil
}

type tapFlags struct {
	to, toNS, method, path, authority string
	maxRPS, limit                     uint32
}

func (f *tapFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.to, "to", "", "only outbound requests to this resource (TYPE/NAME)")
	c.Flags().StringVar(&f.toNS, "to-namespace", "", "namespace of --to (default: -n)")
	c.Flags().StringVar(&f.method, "method", "", "only requests with this HTTP method")
	c.Flags().StringVar(&f.path, "path", "", "only requests whose path starts with this prefix")
	c.Flags().StringVar(&f.authority, "authority", "", "only requests with this :authority (Host)")
	c.Flags().Uint32Var(&f.maxRPS, "max-rps", 100, "requests per second each proxy may report")
}

// prepare resolves the targets and the proxies' request.
func (f *tapFlags) prepare(ctx context.Context, env *Env, args []string) (*TapEnv, []tap.Target, *tap.Filter, error) {
	if _, err := metrics.ParseResource(args, ""); err != nil {
		return nil, nil, nil, err
	}
	te, err := env.tapEnv()
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := metrics.ParseResource(args, te.Namespace)
	if err != nil {
		return nil, nil, nil, err
	}
	filter := &tap.Filter{Method: f.method, PathPrefix: f.path, Authority: f.authority, MaxRPS: f.maxRPS, Limit: f.limit}
	if f.to != "" {
		ns := f.toNS
		if ns == "" {
			ns = te.Namespace
		}
		to, err := metrics.ParseResource([]string{f.to}, ns)
		if err != nil {
			return nil, nil, nil, err
		}
		filter.To = &to
	}
	if _, err := filter.Request(); err != nil {
		return nil, nil, nil, err
	}
	ns := res.Namespace
	if res.Kind == metrics.KindNamespace {
		ns = res.Name
	}
	if err := tap.Authorize(ctx, te.Kube, ns); err != nil {
		return nil, nil, nil, te.wrap(err)
	}
	targets, note, err := tap.Targets(ctx, te.Kube, res)
	if err != nil {
		return nil, nil, nil, te.wrap(err)
	}
	if note != "" {
		fmt.Fprintf(env.Err, "tap: skipping pods: %s\n", note)
	}
	return te, targets, filter, nil
}

func newTapCmd(env *Env) *cobra.Command {
	var f tapFlags
	var output string
	c := &cobra.Command{
		Use:   "tap TYPE/NAME",
		Short: "Stream the live requests of a resource's proxies (method, path, status, latency, identities)",
		Long: `tap streams the requests the proxies of a resource's pods route, as they happen:
one line when a request starts (req), when its response starts (rsp) and when it
ends (end). It reaches each proxy through a Kubernetes port-forward: you need
'create pods/portforward' in the resource's namespace. Pods injected before viz was
installed have tap disabled until they restart.`,
		Example: `  mesh viz tap deploy/web -n emojivoto
  mesh viz tap deploy/web -n emojivoto --to deploy/emoji --method GET --path /api
  mesh viz tap pod/web-0 -n emojivoto --limit 10 -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != OutputTable && output != OutputJSON {
				return fmt.Errorf("viz: unknown output format %q (accepted: table, json)", output)
			}
			te, targets, filter, err := f.prepare(cmd.Context(), env, args)
			if err != nil {
				return err
			}
			req, _ := filter.Request()
			ends := uint32(0)
			return tap.Stream(cmd.Context(), targets, te.Dial, req, func(e tap.Event) error {
				var err error
				if output == OutputJSON {
					err = tap.WriteEventJSON(env.Out, e)
				} else {
					err = tap.WriteEvent(env.Out, e)
				}
				if err != nil {
					return err
				}
				if e.Event.GetResponseEnd() != nil {
					ends++
					if f.limit > 0 && ends >= f.limit {
						return tap.ErrStop
					}
				}
				return nil
			})
		},
	}
	f.register(c)
	c.Flags().Uint32Var(&f.limit, "limit", 0, "stop after this many requests (0: until interrupted)")
	c.Flags().StringVarP(&output, "output", "o", OutputTable, "output format: table (one line per event) or json (one object per line)")
	return c
}

func newTopCmd(env *Env) *cobra.Command {
	var f tapFlags
	var duration time.Duration
	var output string
	c := &cobra.Command{
		Use:   "top TYPE/NAME",
		Short: "The busiest paths of a resource, from its live requests",
		Long: `top taps the live requests of a resource's proxies for --duration (or until
--limit requests or an interrupt) and prints them aggregated by direction, method,
authority and path: count, success rate, best, worst and last latency.

-o json prints, on stdout, one JSON array of rows, busiest first ([] when no
request was tapped): direction ("in" or "out"), method, authority, path, count
(completed requests), successRate (0..1), bestLatencyMs, worstLatencyMs and
lastLatencyMs.`,
		Example: `  mesh viz top deploy/web -n emojivoto --duration 10s
  mesh viz top deploy/web -n emojivoto --to deploy/emoji --limit 100
  mesh viz top deploy/web -n emojivoto -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != OutputTable && output != OutputJSON {
				return fmt.Errorf("viz: unknown output format %q (accepted: table, json)", output)
			}
			if duration <= 0 {
				return fmt.Errorf("viz: --duration %s must be positive", duration)
			}
			te, targets, filter, err := f.prepare(cmd.Context(), env, args)
			if err != nil {
				return err
			}
			req, _ := filter.Request()
			ctx, cancel := context.WithTimeout(cmd.Context(), duration)
			defer cancel()
			top := tap.NewTop()
			err = tap.Stream(ctx, targets, te.Dial, req, func(e tap.Event) error {
				if n := top.Add(e); f.limit > 0 && uint32(n) >= f.limit {
					return tap.ErrStop
				}
				return nil
			})
			if err != nil {
				return err
			}
			if output == OutputJSON {
				return top.WriteJSON(env.Out)
			}
			return top.Write(env.Out)
		},
	}
	f.register(c)
	c.Flags().Uint32Var(&f.limit, "limit", 0, "stop after this many requests (0: --duration only)")
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "how long to tap")
	c.Flags().StringVarP(&output, "output", "o", OutputTable, "output format: table or json (an array of rows)")
	return c
}
