package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/conduit-mesh/conduit/core/injector"
)

type injectOptions struct {
	manual      bool
	values      string
	sidecarMode string
}

func newInjectCmd(o *Options) *cobra.Command {
	opt := &injectOptions{}
	c := &cobra.Command{
		Use:   "inject FILE|DIR|- ...",
		Short: "Add the Conduit proxy to workloads in Kubernetes manifests",
		Long: `inject reads Kubernetes manifests (YAML or JSON, several documents separated by ---,
kind: List) from files, directories (their *.yaml, *.yml and *.json files) or standard
input ("-") and prints them to standard output with Conduit enabled on every workload:
Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods, also inside
Lists. Other objects (Services, ConfigMaps, ...) pass through unchanged. Pipe the result
to 'kubectl apply -f -'.

By default inject sets the annotation conduit.dev/inject: enabled on the pod template
(a Pod's own metadata; a CronJob's spec.jobTemplate.spec.template): the injector adds
the proxy when the pods are created. Nothing is read from the cluster.

With --manual inject adds the full proxy spec itself, exactly as the injector webhook
would (proxy-init, the proxy, the identity token volume, labels and annotations). It
reads the proxy configuration from the ConfigMap conduit-config of the control plane
(--conduit-namespace), or from --values FILE without a cluster.

Workloads already injected, opted out (conduit.dev/inject: disabled), using hostNetwork
or in kube-system or the control-plane namespace are left unchanged; another value of
conduit.dev/inject is an error. Standard error
gets one line per object (deployment "web" injected); standard output only YAML.
Objects that inject does not change are printed exactly as they were read; the others
are re-encoded (keys sorted, comments dropped). Nothing is printed on an error.`,
		Example: `  mesh inject deploy.yaml | kubectl apply -f -
  kubectl get deploy -o yaml | mesh inject - | kubectl apply -f -
  kubectl get deploy,sts -n emojivoto -o yaml | mesh inject --manual - | kubectl apply -f -
  mesh inject --manual --values conduit-values.yaml k8s/ > meshed.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t := &transformer{mode: modeAnnotate, cpns: o.ControlPlaneNamespace, log: cmd.ErrOrStderr()}
			if opt.manual {
				inj, ns, err := opt.manualInjector(cmd.Context(), o)
				if err != nil {
					return err
				}
				t.mode, t.inj, t.defaultNS = modeManual, inj, ns
			} else if opt.values != "" || cmd.Flags().Changed("sidecar-mode") {
				return errors.New("inject: --values and --sidecar-mode only apply with --manual")
			}
			return runTransform(cmd, "inject", args, t)
		},
	}
	f := c.Flags()
	f.BoolVar(&opt.manual, "manual", false, "add the proxy spec itself instead of the conduit.dev/inject annotation")
	f.StringVar(&opt.values, "values", "", "with --manual: read the proxy configuration from this file (the 'values' key of conduit-config) instead of the cluster")
	f.StringVar(&opt.sidecarMode, "sidecar-mode", string(injector.SidecarAuto), "with --manual: native (the proxy is an init container with restartPolicy Always, Kubernetes >= 1.29), regular, or auto (the cluster's version decides; native with --values)")
	return c
}

func newUninjectCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "uninject FILE|DIR|- ...",
		Short: "Remove the Conduit proxy from workloads in Kubernetes manifests",
		Long: `uninject reverses 'mesh inject' (with or without --manual) on the workloads of the
manifests read from files, directories or standard input ("-"): it removes the
annotation conduit.dev/inject, and what the injector adds (the conduit-init and
conduit-proxy containers, the conduit-identity-token and conduit-xtables-lock volumes,
the conduit.dev/proxy-version and conduit.dev/control-plane-ns labels, the
conduit.dev/inject-status and conduit.dev/identity-mode annotations). An opt-out
(conduit.dev/inject: disabled) and config.conduit.dev/* annotations stay. Other objects pass through unchanged. Pipe the result to
'kubectl apply -f -'; the pods are re-created without the proxy.

A namespace annotated conduit.dev/inject: enabled still injects the new pods: annotate
the workload with conduit.dev/inject: disabled, or remove the namespace's annotation.`,
		Example: `  mesh uninject deploy.yaml | kubectl apply -f -
  kubectl get deploy -n emojivoto -o yaml | mesh uninject - | kubectl apply -f -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTransform(cmd, "uninject", args, &transformer{mode: modeUninject, log: cmd.ErrOrStderr()})
		},
	}
}

// manualInjector builds the injector used by --manual, and the namespace of
// workloads that name none.
func (opt *injectOptions) manualInjector(ctx context.Context, o *Options) (*injector.Injector, string, error) {
	cpns := o.ControlPlaneNamespace
	mode := injector.SidecarMode(opt.sidecarMode)
	switch mode {
	case injector.SidecarAuto, injector.SidecarNative, injector.SidecarRegular:
	default:
		return nil, "", fmt.Errorf("inject: --sidecar-mode %q: accepted: auto, native, regular", opt.sidecarMode)
	}
	inj := &injector.Injector{ControlPlaneNamespace: cpns, NativeSidecar: mode != injector.SidecarRegular}
	if opt.values != "" {
		b, err := os.ReadFile(opt.values)
		if err != nil {
			return nil, "", fmt.Errorf("inject: --values: %w", err)
		}
		cfg, err := injector.ParseConfig(cpns, b)
		if err != nil {
			return nil, "", fmt.Errorf("inject: --values %s: %w (the file holds the 'values' key of the ConfigMap %s, see docs/injector.md)", opt.values, err, injector.ConfigMapName)
		}
		if strings.TrimSpace(cfg.Identity.TrustAnchorsPEM) == "" {
			return nil, "", fmt.Errorf("inject: --values %s sets no identity.trustAnchorsPEM: the proxy needs the trust anchors to get its identity; add them (the PEM bundle of the ConfigMap %s) or drop --values to read them from the cluster", opt.values, injector.TrustRootsName)
		}
		inj.Config = func() injector.Config { return cfg }
		ns := o.Namespace
		if ns == "" {
			ns = corev1.NamespaceDefault
		}
		return inj, ns, nil
	}
	hint := "inject without --manual (the annotation only; the injector adds the proxy when the pods are created), or pass --values FILE"
	k, err := o.Kube()
	if err != nil {
		return nil, "", fmt.Errorf("inject --manual: %w; it reads the proxy configuration from the cluster: %s", err, hint)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cms := k.Client.CoreV1().ConfigMaps(cpns)
	cm, err := cms.Get(ctx, injector.ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("inject --manual: ConfigMap %s/%s not found: is Conduit installed ('mesh check'; --conduit-namespace if it is elsewhere)? Or %s", cpns, injector.ConfigMapName, hint)
	case err != nil:
		return nil, "", fmt.Errorf("inject --manual: read the proxy configuration (ConfigMap %s/%s): %w; %s", cpns, injector.ConfigMapName, err, hint)
	}
	store := injector.NewConfigStore(cpns, slog.New(slog.NewTextHandler(io.Discard, nil)))
	store.Update(cm, false)
	if loaded, err := store.Loaded(); err != nil || !loaded {
		if err == nil {
			err = errors.New("not loaded")
		}
		return nil, "", fmt.Errorf("inject --manual: ConfigMap %s/%s is invalid: %w (fix it with 'mesh upgrade')", cpns, injector.ConfigMapName, err)
	}
	roots, err := cms.Get(ctx, injector.TrustRootsName, metav1.GetOptions{})
	switch {
	case err == nil:
		store.Update(roots, false)
	case !apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("inject --manual: read the trust anchors (ConfigMap %s/%s): %w; %s", cpns, injector.TrustRootsName, err, hint)
	}
	cfg := store.Get()
	if strings.TrimSpace(cfg.Identity.TrustAnchorsPEM) == "" {
		return nil, "", fmt.Errorf("inject --manual: no trust anchors in ConfigMap %s/%s (identity.trustAnchorsPEM) nor %s/%s: the proxy could not get an identity; check the installation with 'mesh check'", cpns, injector.ConfigMapName, cpns, injector.TrustRootsName)
	}
	inj.Config = func() injector.Config { return cfg }
	if mode == injector.SidecarAuto {
		v, err := k.Client.Discovery().ServerVersion()
		if err != nil {
			return nil, "", fmt.Errorf("inject --manual: discover the Kubernetes version: %w; pass --sidecar-mode native or regular", err)
		}
		inj.NativeSidecar = injector.SupportsNativeSidecars(v.Major, v.Minor)
	}
	return inj, k.Namespace, nil
}

// runTransform reads every source, transforms each document and prints the
// result only when every document succeeded.
func runTransform(cmd *cobra.Command, verb string, args []string, t *transformer) error {
	srcs, err := readSources(args, cmd.InOrStdin(), verb)
	if err != nil {
		return err
	}
	t.ctx = cmd.Context()
	if t.ctx == nil {
		t.ctx = context.Background()
	}
	var out bytes.Buffer
	var log bytes.Buffer
	realLog := t.log
	t.log = &log
	n := 0
	for _, s := range srcs {
		docs, err := splitDocuments(s.data)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", verb, s.name, err)
		}
		for _, d := range docs {
			b, err := t.document(d.data)
			if err != nil {
				return fmt.Errorf("%s: %s: document %d: %w", verb, s.name, d.number, inFile(err, s.name, d.line))
			}
			if b == nil {
				continue
			}
			if n > 0 {
				out.WriteString("---\n")
			}
			out.Write(b)
			n++
		}
	}
	if n == 0 {
		// kubectl apply would say "no objects passed to apply": say why here.
		fmt.Fprintf(&log, "%s: warning: no Kubernetes objects in the input (%s)\n", verb, sourceNames(srcs))
	}
	if _, err := realLog.Write(log.Bytes()); err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(out.Bytes())
	return err
}

func sourceNames(srcs []source) string {
	if len(srcs) == 0 {
		return "no manifest files found"
	}
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.name
	}
	return "read: " + strings.Join(names, ", ")
}

type source struct {
	name string
	data []byte
}

// readSources reads files, the manifests of directories (not recursively)
// and "-" (standard input, once).
func readSources(args []string, stdin io.Reader, verb string) ([]source, error) {
	var srcs []source
	stdinRead := false
	for _, a := range args {
		if a == "-" {
			if stdinRead {
				return nil, fmt.Errorf("%s: standard input (-) given twice", verb)
			}
			stdinRead = true
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("%s: read standard input: %w", verb, err)
			}
			srcs = append(srcs, source{"standard input", b})
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (pass manifest files, directories or - for standard input)", verb, err)
		}
		files := []string{a}
		if st.IsDir() {
			entries, err := os.ReadDir(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", verb, err)
			}
			files = files[:0]
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(a, e.Name()))
					}
				}
			}
			sort.Strings(files)
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: directory %s holds no *.yaml, *.yml or *.json file", verb, a)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", verb, err)
			}
			srcs = append(srcs, source{f, b})
		}
	}
	return srcs, nil
}

// document is one document of a YAML stream: its bytes, its number in the
// stream (1-based, counting empty documents) and the line of the stream it
// starts on.
type document struct {
	data         []byte
	number, line int
}

// splitDocuments splits a YAML stream at its --- separators (a JSON
// document is one document).
func splitDocuments(data []byte) ([]document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	number, line := 0, 1
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split YAML documents after line %d: %w", line, err)
		}
		// The reader keeps a separator that follows another one (or opens
		// the stream) as the first line of the next document: after the
		// first document, it stands for the empty document between the two.
		number++
		if number > 1 && isSeparator(d) {
			number++
		}
		docs = append(docs, document{data: d, number: number, line: line})
		line += bytes.Count(d, []byte("\n")) + 1 // and the separator that ended it
	}
}

// isSeparator reports whether doc starts with a document separator line
// ("---", optionally followed by a comment), as utilyaml's reader sees one.
func isSeparator(doc []byte) bool {
	first, _, _ := bytes.Cut(doc, []byte("\n"))
	rest, ok := bytes.CutPrefix(first, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// yamlLine finds the line a YAML syntax error names ("yaml: line 7: ...").
var yamlLine = regexp.MustCompile(`yaml: line ([0-9]+): `)

// lineError is an error whose message names a line of the stream rather
// than of its document.
type lineError struct {
	msg   string
	cause error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.cause }

// inFile rewrites a YAML syntax error of a document that starts on line
// start of the stream name so that it names the stream's line.
func inFile(err error, name string, start int) error {
	var ye *invalidYAMLError
	if !errors.As(err, &ye) {
		return err
	}
	m := yamlLine.FindStringSubmatchIndex(ye.cause.Error())
	if m == nil {
		return err
	}
	msg := ye.cause.Error()
	n, convErr := strconv.Atoi(msg[m[2]:m[3]])
	if convErr != nil {
		return err
	}
	return &lineError{msg: fmt.Sprintf("invalid YAML at line %d of %s: %s", start+n-1, name, msg[m[1]:]), cause: err}
}

// invalidYAMLError is a document that is not YAML.
type invalidYAMLError struct{ cause error }

func (e *invalidYAMLError) Error() string { return "invalid YAML: " + e.cause.Error() }
func (e *invalidYAMLError) Unwrap() error { return e.cause }

type transformMode int

const (
	modeAnnotate transformMode = iota
	modeManual
	modeUninject
)

// transformer injects or uninjects the workloads of one document.
type transformer struct {
	mode      transformMode
	inj       *injector.Injector // modeManual
	cpns      string             // never injected
	defaultNS string             // modeManual: namespace of objects that name none
	ctx       context.Context
	log       io.Writer
}

// document returns the document to print: as read when nothing changed,
// re-encoded otherwise; nil for an empty document.
func (t *transformer) document(doc []byte) ([]byte, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, &invalidYAMLError{cause: err}
	}
	v, err := decodeJSON(js)
	if err != nil {
		return nil, fmt.Errorf("invalid document: %w", err)
	}
	if v == nil {
		return nil, nil // only comments or whitespace
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a Kubernetes object (a YAML mapping with apiVersion and kind), found %T", v)
	}
	changed, err := t.object(obj, "")
	if err != nil {
		return nil, err
	}
	if !changed {
		// Exactly as read: leading indentation and the trailing spaces or
		// blank lines of a block scalar at the end are part of the values
		// (trimming them changed a ConfigMap's data, or broke the YAML).
		if !bytes.HasSuffix(doc, []byte("\n")) {
			doc = append(doc[:len(doc):len(doc)], '\n')
		}
		return doc, nil
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return out, nil
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// workloadKinds maps the kinds inject handles, by API group, to the path
// of their pod template (nil: the object is the pod).
var workloadKinds = map[string]map[string][]string{
	"apps":       {"Deployment": {"spec", "template"}, "StatefulSet": {"spec", "template"}, "DaemonSet": {"spec", "template"}, "ReplicaSet": {"spec", "template"}},
	"extensions": {"Deployment": {"spec", "template"}, "DaemonSet": {"spec", "template"}, "ReplicaSet": {"spec", "template"}},
	"batch":      {"Job": {"spec", "template"}, "CronJob": {"spec", "jobTemplate", "spec", "template"}},
	"":           {"Pod": nil},
}

// object transforms obj in place and reports whether it changed. item
// names the List item ("item 3: ") for errors.
func (t *transformer) object(obj map[string]any, item string) (bool, error) {
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		changed := false
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return false, fmt.Errorf("%sitem %d of the %s is not an object", item, i+1, kind)
			}
			c, err := t.object(m, fmt.Sprintf("%sitem %d: ", item, i+1))
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" {
		name, _ = meta["generateName"].(string)
	}
	what := fmt.Sprintf("%s %q", strings.ToLower(kind), name)
	if kind == "" {
		what = "object without kind"
	}
	group, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		group = "" // v1: the core group
	}
	path, ok := workloadKinds[group][kind]
	if !ok {
		fmt.Fprintf(t.log, "%s skipped: not a workload\n", what)
		return false, nil
	}
	tmpl := obj
	for i, p := range path {
		next, ok := tmpl[p].(map[string]any)
		if !ok {
			return false, fmt.Errorf("%s%s has no pod template (%s)", item, what, strings.Join(path[:i+1], "."))
		}
		tmpl = next
	}
	ns, _ := meta["namespace"].(string)
	var msg string
	var err error
	changed := false
	switch t.mode {
	case modeAnnotate:
		changed, msg, err = t.annotate(tmpl, ns)
	case modeManual:
		changed, msg, err = t.manual(tmpl, ns, what)
	case modeUninject:
		changed = uninject(tmpl)
		msg = "uninjected"
		if !changed {
			msg = "not injected: unchanged"
		}
	}
	if err != nil {
		return false, fmt.Errorf("%s%s: %w", item, what, err)
	}
	fmt.Fprintf(t.log, "%s %s\n", what, msg)
	return changed, nil
}

// podOf decodes a pod template (or a Pod) for the injector's checks.
func podOf(tmpl map[string]any) (*corev1.Pod, error) {
	b, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(b, &pod); err != nil {
		return nil, fmt.Errorf("invalid pod template: %w", err)
	}
	return &pod, nil
}

// skipReason says why a pod is left alone by inject, or "".
func (t *transformer) skipReason(pod *corev1.Pod, ns string) string {
	switch {
	case ns == "kube-system" || (ns != "" && ns == t.cpns):
		return fmt.Sprintf("skipped: namespace %s is never injected", ns)
	case pod.Annotations[injector.AnnotationInject] == injector.InjectDisabled:
		return fmt.Sprintf("skipped: annotation %s: %s (remove it to inject)", injector.AnnotationInject, injector.InjectDisabled)
	case pod.Spec.HostNetwork:
		return "skipped: hostNetwork pods are never injected (the proxy's nat rules would apply to the node)"
	}
	return ""
}

// annotate sets conduit.dev/inject: enabled on the pod template.
func (t *transformer) annotate(tmpl map[string]any, ns string) (bool, string, error) {
	pod, err := podOf(tmpl)
	if err != nil {
		return false, "", err
	}
	if injector.AlreadyInjected(pod) || pod.Annotations[injector.AnnotationInject] == injector.InjectEnabled {
		return false, "already injected", nil
	}
	if r := t.skipReason(pod, ns); r != "" {
		return false, r, nil
	}
	if v, ok := pod.Annotations[injector.AnnotationInject]; ok {
		// Not ours to guess ("false" or "off" may mean an opt-out): the
		// injector would refuse the pod, and --manual refuses it too.
		return false, "", fmt.Errorf("annotation %s=%q is invalid (accepted: %s, %s)", injector.AnnotationInject, v, injector.InjectEnabled, injector.InjectDisabled)
	}
	setAnnotation(tmpl, injector.AnnotationInject, injector.InjectEnabled)
	return true, "injected", nil
}

func setAnnotation(tmpl map[string]any, k, v string) {
	meta, ok := tmpl["metadata"].(map[string]any)
	if !ok {
		meta = map[string]any{}
		tmpl["metadata"] = meta
	}
	ann, ok := meta["annotations"].(map[string]any)
	if !ok {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[k] = v
}

// manual applies the injector's patch to the pod template.
func (t *transformer) manual(tmpl map[string]any, ns, what string) (bool, string, error) {
	pod, err := podOf(tmpl)
	if err != nil {
		return false, "", err
	}
	if injector.AlreadyInjected(pod) {
		return false, "already injected", nil
	}
	if r := t.skipReason(pod, ns); r != "" {
		return false, r, nil
	}
	if ns == "" {
		ns = t.defaultNS
	}
	// Work on a copy: the template is only replaced once injected.
	b, err := json.Marshal(tmpl)
	if err != nil {
		return false, "", err
	}
	v, err := decodeJSON(b)
	if err != nil {
		return false, "", err
	}
	cp := v.(map[string]any)
	setAnnotation(cp, injector.AnnotationInject, injector.InjectEnabled)
	if b, err = json.Marshal(cp); err != nil {
		return false, "", err
	}
	out, res, err := t.inj.RenderJSON(t.ctx, injector.Request{Namespace: ns}, b)
	if err != nil {
		return false, "", err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(t.log, "warning: %s: %s\n", what, w)
	}
	if out == nil {
		return false, "skipped: " + res.Reason, nil
	}
	v, err = decodeJSON(out)
	if err != nil {
		return false, "", fmt.Errorf("decode the injected pod: %w", err)
	}
	injected := v.(map[string]any)
	clear(tmpl)
	for k, v := range injected {
		tmpl[k] = v
	}
	return true, "injected", nil
}

// uninject removes from a pod template what inject and the injector add
// and reports whether anything was removed.
func uninject(tmpl map[string]any) bool {
	changed := false
	if meta, ok := tmpl["metadata"].(map[string]any); ok {
		keys := []string{injector.AnnotationInjectStatus, injector.AnnotationIdentityMode}
		if ann, _ := meta["annotations"].(map[string]any); ann[injector.AnnotationInject] == injector.InjectEnabled {
			keys = append(keys, injector.AnnotationInject) // an opt-out (disabled) stays
		}
		changed = deleteKeys(meta, "annotations", keys...) || changed
		changed = deleteKeys(meta, "labels", injector.LabelProxyVersion, injector.LabelControlPlaneNS) || changed
		if changed && len(meta) == 0 {
			delete(tmpl, "metadata") // created by inject
		}
	}
	spec, ok := tmpl["spec"].(map[string]any)
	if !ok {
		return changed
	}
	changed = deleteNamed(spec, "initContainers", injector.ProxyInitContainerName, injector.ProxyContainerName) || changed
	changed = deleteNamed(spec, "containers", injector.ProxyContainerName) || changed
	changed = deleteNamed(spec, "volumes", injector.TokenVolumeName, injector.XtablesVolumeName) || changed
	return changed
}

// deleteKeys deletes keys from the map m[field], and the map itself once empty.
func deleteKeys(m map[string]any, field string, keys ...string) bool {
	sub, ok := m[field].(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for _, k := range keys {
		if _, ok := sub[k]; ok {
			delete(sub, k)
			changed = true
		}
	}
	if changed && len(sub) == 0 {
		delete(m, field)
	}
	return changed
}

// deleteNamed removes the elements of the list m[field] whose name is one
// of names, and the list itself once empty (the injector creates it when
// the pod has none). The containers list is never removed.
func deleteNamed(m map[string]any, field string, names ...string) bool {
	list, ok := m[field].([]any)
	if !ok {
		return false
	}
	kept := list[:0:0]
	for _, e := range list {
		if el, ok := e.(map[string]any); ok {
			if n, _ := el["name"].(string); slices.Contains(names, n) {
				continue
			}
		}
		kept = append(kept, e)
	}
	if len(kept) == len(list) {
		return false
	}
	if len(kept) == 0 && field != "containers" {
		delete(m, field)
	} else {
		m[field] = kept
	}
	return true
}
