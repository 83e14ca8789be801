package v1alpha2

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group, Version, Kind and Resource of the ServiceProfile custom resource.
const (
	Group    = "conduit.dev"
	Version  = "v1alpha2"
	Kind     = "ServiceProfile"
	Resource = "serviceprofiles"
	ListKind = "ServiceProfileList"
)

// SchemeGroupVersion is conduit.dev/v1alpha2.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// GroupVersionResource of serviceprofiles.conduit.dev/v1alpha2, for the dynamic client.
var GroupVersionResource = SchemeGroupVersion.WithResource(Resource)

// GroupVersionKind of a ServiceProfile.
var GroupVersionKind = SchemeGroupVersion.WithKind(Kind)

// AddToScheme registers ServiceProfile and ServiceProfileList in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &ServiceProfile{}, &ServiceProfileList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// ServiceProfile describes the routes of one Service. Its name is the
// Service's fully qualified name ("web.emojivoto.svc.cluster.local"); it lives
// in the Service's namespace (or in a client's namespace, where it overrides
// the Service's own profile for the clients of that namespace).
type ServiceProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ServiceProfileSpec `json:"spec"`
}

// ServiceProfileList is a list of ServiceProfiles.
type ServiceProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ServiceProfile `json:"items"`
}

// ServiceProfileSpec is the desired behaviour of the proxies towards a Service.
type ServiceProfileSpec struct {
	// Routes are matched in order; the first whose condition matches a request wins.
	Routes []RouteSpec `json:"routes,omitempty"`
	// RetryBudget bounds the retries of the routes marked isRetryable.
	RetryBudget *RetryBudget `json:"retryBudget,omitempty"`
	// DstOverrides split the Service's traffic between authorities.
	DstOverrides []WeightedDst `json:"dstOverrides,omitempty"`
}

// RouteSpec is one route of a Service.
type RouteSpec struct {
	// Name labels the route's metrics ("route" label).
	Name string `json:"name"`
	// Condition selects the requests of the route.
	Condition *RequestMatch `json:"condition"`
	// ResponseClasses classify responses as failures; the first that matches wins.
	ResponseClasses []ResponseClass `json:"responseClasses,omitempty"`
	// IsRetryable lets the proxy retry failed requests of the route.
	IsRetryable bool `json:"isRetryable,omitempty"`
	// Timeout of a request of the route, as a Go duration ("250ms", "2s").
	Timeout string `json:"timeout,omitempty"`
}

// RequestMatch matches requests. Exactly one field is set. PathRegex is an
// RE2 regular expression anchored at both ends. The CRD schema allows three
// levels: a condition, its all/any/not, and theirs (which only take method and
// pathRegex).
type RequestMatch struct {
	All       []RequestMatch `json:"all,omitempty"`
	Any       []RequestMatch `json:"any,omitempty"`
	Not       *RequestMatch  `json:"not,omitempty"`
	PathRegex string         `json:"pathRegex,omitempty"`
	Method    string         `json:"method,omitempty"`
}

// ResponseClass says whether the responses its condition matches are failures.
type ResponseClass struct {
	Condition *ResponseMatch `json:"condition"`
	IsFailure bool           `json:"isFailure,omitempty"`
}

// ResponseMatch matches responses. Exactly one field is set; three levels, as RequestMatch.
type ResponseMatch struct {
	All    []ResponseMatch `json:"all,omitempty"`
	Any    []ResponseMatch `json:"any,omitempty"`
	Not    *ResponseMatch  `json:"not,omitempty"`
	Status *Range          `json:"status,omitempty"`
}

// Range is an inclusive range of HTTP status codes; an unset bound is open.
type Range struct {
	Min uint32 `json:"min,omitempty"`
	Max uint32 `json:"max,omitempty"`
}

// RetryBudget allows retries as a ratio of the original requests, plus a floor.
type RetryBudget struct {
	// RetryRatio is the ratio of retries to original requests, in [0, 1].
	RetryRatio float32 `json:"retryRatio"`
	// MinRetriesPerSecond are allowed whatever the ratio.
	MinRetriesPerSecond uint32 `json:"minRetriesPerSecond"`
	// TTL is the window over which requests are counted, as a Go duration.
	TTL string `json:"ttl"`
}

// WeightedDst is an authority ("svc.ns.svc.cluster.local:port") and its share
// of the traffic, relative to the other dstOverrides.
type WeightedDst struct {
	Authority string `json:"authority"`
	Weight    uint32 `json:"weight"`
}

// FromUnstructured converts an object read through the dynamic client.
func FromUnstructured(obj map[string]any) (*ServiceProfile, error) {
	sp := &ServiceProfile{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, sp); err != nil {
		return nil, fmt.Errorf("serviceprofile: decode: %w", err)
	}
	return sp, nil
}

// ToUnstructured converts sp for the dynamic client.
func ToUnstructured(sp *ServiceProfile) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sp)
	if err != nil {
		return nil, fmt.Errorf("serviceprofile: encode: %w", err)
	}
	return m, nil
}
