package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	pluginv1 "github.com/conduit-mesh/conduit/proto/plugin/v1"
	"google.golang.org/grpc"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// AllowListName is the ConfigMap, in the control plane's namespace, that
// lists the extensions whose hooks the injector and destination may run:
// each key is an extension's name, its value the SHA-256 (lower-case hex,
// optionally prefixed "sha256:") of the hook binary the extension hands out,
// optionally followed by " failurePolicy=Fail" (see AllowEntry).
// `mesh extensions allow|disallow` write it; an extension that is not in it,
// or whose binary has another digest, is never run.
const AllowListName = "conduit-extension-allowlist"

// FailurePolicy says what a failed injector hook does to the pod.
type FailurePolicy string

const (
	// Ignore (the default) injects the pod without the hook's patch.
	Ignore FailurePolicy = "Ignore"
	// Fail refuses the pod, as a webhook's failurePolicy: Fail does: for
	// an extension whose patch the pods cannot do without. It applies to
	// the injector only; discovery never fails because of an extension.
	Fail FailurePolicy = "Fail"
)

// AllowEntry is what the allow-list says of one extension.
type AllowEntry struct {
	// SHA256 is the digest of the hook binary (lower-case hex).
	SHA256        string
	FailurePolicy FailurePolicy
}

// String is the entry's form in the ConfigMap.
func (e AllowEntry) String() string {
	if e.FailurePolicy == Fail {
		return "sha256:" + e.SHA256 + " failurePolicy=Fail"
	}
	return "sha256:" + e.SHA256
}

// ParseAllowEntry reads "sha256:<hex>[ failurePolicy=Ignore|Fail]".
func ParseAllowEntry(s string) (AllowEntry, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return AllowEntry{}, fmt.Errorf("empty entry: want sha256:<64 hex digits>[ failurePolicy=Ignore|Fail]")
	}
	d, err := ParseDigest(fields[0])
	if err != nil {
		return AllowEntry{}, err
	}
	e := AllowEntry{SHA256: d, FailurePolicy: Ignore}
	for _, f := range fields[1:] {
		v, ok := strings.CutPrefix(f, "failurePolicy=")
		if !ok {
			return AllowEntry{}, fmt.Errorf("unknown option %q (accepted: failurePolicy=Ignore|Fail)", f)
		}
		if e.FailurePolicy, err = ParseFailurePolicy(v); err != nil {
			return AllowEntry{}, err
		}
	}
	return e, nil
}

// ParseFailurePolicy reads Ignore or Fail (any case).
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch strings.ToLower(s) {
	case "ignore", "":
		return Ignore, nil
	case "fail":
		return Fail, nil
	}
	return "", fmt.Errorf("failure policy %q: accepted: Ignore, Fail", s)
}

// AllowList maps an extension's name to its entry.
type AllowList map[string]AllowEntry

// ParseDigest validates a SHA-256 digest ("sha256:<hex>" or "<hex>") and
// returns its lower-case hex form.
func ParseDigest(s string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "sha256:")))
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not a SHA-256 digest (64 hex digits, optionally prefixed sha256:)", s)
	}
	return h, nil
}

// ParseAllowList reads the allow-list from its ConfigMap's data. Entries
// that are not a valid digest are returned as errors (and left out), so that
// one bad entry does not disable the others.
func ParseAllowList(data map[string]string) (AllowList, []error) {
	out := AllowList{}
	var errs []error
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := ParseAllowEntry(data[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("pluginhost: ConfigMap %s, key %s: %w", AllowListName, k, err))
			continue
		}
		out[k] = e
	}
	return out, errs
}

// ReadAllowList reads the allow-list of the control plane in namespace ns;
// a missing ConfigMap is an empty list.
func ReadAllowList(ctx context.Context, cs kubernetes.Interface, ns string) (AllowList, []error, error) {
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, AllowListName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return AllowList{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pluginhost: read ConfigMap %s/%s: %w", ns, AllowListName, err)
	}
	al, errs := ParseAllowList(cm.Data)
	return al, errs, nil
}

// AllowListConfigMap returns the ConfigMap holding al, for `kubectl apply`.
func AllowListConfigMap(ns string, al AllowList) *corev1.ConfigMap {
	data := map[string]string{}
	for k, v := range al {
		data[k] = v.String()
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: AllowListName, Namespace: ns, Labels: map[string]string{"conduit.dev/control-plane-component": "extension-allowlist"}},
		Data:       data,
	}
}

// BinaryDigest downloads the hook binary an extension hands out on conn (its
// Distribution service) and returns its size and SHA-256, computed over
// what was received: what `mesh extensions allow` pins. It asks for no
// platform: the binary is the one the extension's pods run.
func BinaryDigest(ctx context.Context, conn grpc.ClientConnInterface) (size int64, sha string, err error) {
	return receiveBinary(ctx, conn, &pluginv1.BinaryRequest{}, io.Discard, 0, func(string) error { return nil })
}

// receiveBinary streams the binary of a Distribution service into w and
// returns its size and the SHA-256 of what was received, which must match
// what the server announced. check vets the announced digest before
// anything is read; maxSize (0: none) bounds the announced size.
func receiveBinary(ctx context.Context, conn grpc.ClientConnInterface, req *pluginv1.BinaryRequest, w io.Writer, maxSize int64, check func(announced string) error) (int64, string, error) {
	stream, err := pluginv1.NewDistributionClient(conn).Binary(ctx, req)
	if err != nil {
		return 0, "", fmt.Errorf("fetch the hook binary: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return 0, "", fmt.Errorf("fetch the hook binary: %w", err)
	}
	if err := check(first.GetSha256()); err != nil {
		return 0, "", err
	}
	want := first.GetSize()
	if want <= 0 || (maxSize > 0 && want > maxSize) {
		return 0, "", fmt.Errorf("hook binary of %d bytes (limit %d)", want, maxSize)
	}
	h := sha256.New()
	var n int64
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, "", fmt.Errorf("fetch the hook binary: %w", err)
		}
		if n += int64(len(c.GetData())); n > want {
			return 0, "", fmt.Errorf("the hook binary is longer than the %d bytes announced", want)
		}
		h.Write(c.GetData())
		if _, err := w.Write(c.GetData()); err != nil {
			return 0, "", fmt.Errorf("write the hook binary: %w", err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != want || sum != first.GetSha256() {
		return 0, "", fmt.Errorf("%w: received %d bytes with SHA-256 %s, announced %d bytes with %s", errDigest, n, sum, want, first.GetSha256())
	}
	return n, sum, nil
}
