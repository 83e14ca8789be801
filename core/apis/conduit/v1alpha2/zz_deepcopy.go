package v1alpha2

import "k8s.io/apimachinery/pkg/runtime"

// Hand-written deep copies (the types are small and recursive).

// DeepCopyInto copies sp into out.
func (sp *ServiceProfile) DeepCopyInto(out *ServiceProfile) {
	*out = *sp
	out.TypeMeta = sp.TypeMeta
	sp.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	sp.Spec.DeepCopyInto(&out.Spec)
}

// DeepCopy returns a deep copy of sp.
func (sp *ServiceProfile) DeepCopy() *ServiceProfile {
	if sp == nil {
		return nil
	}
	out := new(ServiceProfile)
	sp.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (sp *ServiceProfile) DeepCopyObject() runtime.Object { return sp.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *ServiceProfileList) DeepCopyInto(out *ServiceProfileList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]ServiceProfile, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a deep copy of l.
func (l *ServiceProfileList) DeepCopy() *ServiceProfileList {
	if l == nil {
		return nil
	}
	out := new(ServiceProfileList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *ServiceProfileList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

// DeepCopyInto copies s into out.
func (s *ServiceProfileSpec) DeepCopyInto(out *ServiceProfileSpec) {
	*out = *s
	if s.Routes != nil {
		out.Routes = make([]RouteSpec, len(s.Routes))
		for i := range s.Routes {
			s.Routes[i].DeepCopyInto(&out.Routes[i])
		}
	}
	if s.RetryBudget != nil {
		rb := *s.RetryBudget
		out.RetryBudget = &rb
	}
	if s.DstOverrides != nil {
		out.DstOverrides = append([]WeightedDst(nil), s.DstOverrides...)
	}
}

// DeepCopyInto copies r into out.
func (r *RouteSpec) DeepCopyInto(out *RouteSpec) {
	*out = *r
	out.Condition = r.Condition.DeepCopy()
	if r.ResponseClasses != nil {
		out.ResponseClasses = make([]ResponseClass, len(r.ResponseClasses))
		for i := range r.ResponseClasses {
			out.ResponseClasses[i] = ResponseClass{
				Condition: r.ResponseClasses[i].Condition.DeepCopy(),
				IsFailure: r.ResponseClasses[i].IsFailure,
			}
		}
	}
}

// DeepCopy returns a deep copy of m.
func (m *RequestMatch) DeepCopy() *RequestMatch {
	if m == nil {
		return nil
	}
	out := &RequestMatch{PathRegex: m.PathRegex, Method: m.Method, Not: m.Not.DeepCopy()}
	out.All = copyRequestMatches(m.All)
	out.Any = copyRequestMatches(m.Any)
	return out
}

func copyRequestMatches(in []RequestMatch) []RequestMatch {
	if in == nil {
		return nil
	}
	out := make([]RequestMatch, len(in))
	for i := range in {
		out[i] = *in[i].DeepCopy()
	}
	return out
}

// DeepCopy returns a deep copy of m.
func (m *ResponseMatch) DeepCopy() *ResponseMatch {
	if m == nil {
		return nil
	}
	out := &ResponseMatch{Not: m.Not.DeepCopy()}
	if m.Status != nil {
		st := *m.Status
		out.Status = &st
	}
	out.All = copyResponseMatches(m.All)
	out.Any = copyResponseMatches(m.Any)
	return out
}

func copyResponseMatches(in []ResponseMatch) []ResponseMatch {
	if in == nil {
		return nil
	}
	out := make([]ResponseMatch, len(in))
	for i := range in {
		out[i] = *in[i].DeepCopy()
	}
	return out
}
