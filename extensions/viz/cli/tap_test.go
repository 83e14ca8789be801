package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/extensions/viz/internal/fixture"
	"github.com/conduit-mesh/conduit/extensions/viz/tap"
	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"google.golang.org/grpc"
	authv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// runTap runs `viz args...` with the fixture cluster, where the user may
// port-forward only in the namespaces of allowed, and fake tap servers.
func runTap(t *testing.T, allowed []string, args ...string) (string, string, *fixture.TapDialer, error) {
	t.Helper()
	kc := fixture.Kube()
	var reviewed []string
	kc.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		reviewed = append(reviewed, ra.Verb+" "+ra.Resource+"/"+ra.Subresource+" in "+ra.Namespace)
		for _, ns := range allowed {
			r.Status.Allowed = r.Status.Allowed || ns == ra.Namespace
		}
		if !r.Status.Allowed {
			r.Status.Reason = "RBAC: no rule allows it"
		}
		return true, r, nil
	})
	d := &fixture.TapDialer{}
	var out, errb bytes.Buffer
	env := &Env{Out: &out, Err: &errb, In: strings.NewReader(""),
		NewTap: func(KubeFlags) (*TapEnv, error) {
			return &TapEnv{Kube: kc, Namespace: "emojivoto", Dial: func(ctx context.Context, tg tap.Target) (grpc.ClientConnInterface, func(), error) {
				return d.Dial(ctx, tg.Namespace, tg.Name)
			}}, nil
		}}
	root := NewCommand(env)
	root.SetArgs(append([]string{"viz"}, args...))
	err := root.ExecuteContext(context.Background())
	if err == nil && len(reviewed) == 0 {
		t.Error("tap ran without checking the user's permission")
	}
	return out.String(), errb.String(), d, err
}

func TestTap(t *testing.T) {
	out, _, d, err := runTap(t, []string{"emojivoto"}, "tap", "deploy/web", "--method", "get", "--path", "/api", "--to", "deploy/emoji")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Servers) != 2 {
		t.Fatalf("tapped %d proxies, want web's 2", len(d.Servers))
	}
	srv := d.Servers["emojivoto/web-6d9f7c8b5-abcde"]
	if srv == nil || len(srv.Requests()) != 1 {
		t.Fatalf("servers = %v", d.Servers)
	}
	m := srv.Requests()[0].GetMatch()
	if m.GetMethod() != "GET" || m.GetPathPrefix() != "/api" || m.GetDirection() != tapv1.Direction_OUTBOUND ||
		m.GetDestinationLabels()["deployment"] != "emoji" || m.GetDestinationLabels()["namespace"] != "emojivoto" || srv.Requests()[0].GetMaxRps() != 100 {
		t.Errorf("match = %v", srv.Requests()[0])
	}
	// The two pods' streams interleave: the golden file is of one pod's lines.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "id=web-6d9f7c8b5-abcde:") {
			lines = append(lines, l)
		}
	}
	golden(t, "tap.golden", strings.Join(lines, "\n")+"\n")
	if n := strings.Count(out, "\n"); n != 16 {
		t.Errorf("%d lines, want 8 per pod:\n%s", n, out)
	}
}

func TestTapLimitAndJSON(t *testing.T) {
	out, _, _, err := runTap(t, []string{"emojivoto"}, "tap", "pod/web-6d9f7c8b5-abcde", "--limit", "1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tap_limit.json", out)
}

func TestTop(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"top.golden", []string{"top", "deploy/web", "--duration", "5s"}},
		{"top.golden", []string{"top", "deploy/web", "-o", "table"}},
		// top had no -o: stat, edges, routes and tap had.
		{"top.json", []string{"top", "deploy/web", "-o", "json"}},
		{"top_limit.json", []string{"top", "pod/web-6d9f7c8b5-abcde", "--limit", "1", "--output=json"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, stderr, _, err := runTap(t, []string{"emojivoto"}, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
			if strings.HasSuffix(tc.golden, ".json") {
				var rows []map[string]any
				if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) == 0 {
					t.Errorf("stdout is not a JSON array of rows (%v): %q", err, out)
				}
				for _, k := range []string{"direction", "method", "authority", "path", "count", "successRate", "bestLatencyMs", "worstLatencyMs", "lastLatencyMs"} {
					if _, ok := rows[0][k]; !ok {
						t.Errorf("row lacks the documented field %q: %v", k, rows[0])
					}
				}
				if stderr != "" {
					t.Errorf("stderr %q", stderr)
				}
			}
		})
	}
}

func TestTapRefused(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		args    []string
		want    string
	}{
		{nil, []string{"tap", "deploy/web"}, "you may not tap pods in namespace emojivoto: tapping needs 'create pods/portforward' there (RBAC: no rule allows it)"},
		{[]string{"other"}, []string{"top", "deploy/web"}, "you may not tap pods in namespace emojivoto"},
		{[]string{"emojivoto"}, []string{"tap", "deploy/emoji"}, "injected before viz was installed"},
		{[]string{"emojivoto"}, []string{"tap", "deploy/vote-bot"}, "not meshed: vote-bot"},
		{[]string{"emojivoto"}, []string{"tap", "deploy/web", "--path", "api"}, "must start with /"},
		{[]string{"emojivoto"}, []string{"tap", "deploy"}, "name one deployment"},
		{[]string{"emojivoto"}, []string{"tap", "deploy/web", "-o", "wide"}, "accepted: table, json"},
		{[]string{"emojivoto"}, []string{"top", "deploy/web", "-o", "wide"}, `viz: unknown output format "wide" (accepted: table, json)`},
	} {
		_, _, d, err := runTap(t, tc.allowed, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
		if len(d.Servers) != 0 {
			t.Errorf("%v: proxies were tapped despite the error", tc.args)
		}
	}
}
