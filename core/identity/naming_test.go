package identity

import (
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	if got := Name("web", "emojivoto", "conduit", "cluster.local"); got != testID {
		t.Fatalf("Name = %q, want %q", got, testID)
	}
}

func TestParseServiceAccountUsername(t *testing.T) {
	tests := []struct {
		in      string
		want    ServiceAccount
		wantErr string
	}{
		{in: "system:serviceaccount:emojivoto:web", want: ServiceAccount{Namespace: "emojivoto", Name: "web"}},
		{in: "system:serviceaccount:ns:sa.with.dots", want: ServiceAccount{Namespace: "ns", Name: "sa.with.dots"}},
		{in: "kubernetes-admin", wantErr: "not a ServiceAccount"},
		{in: "system:node:node1", wantErr: "not a ServiceAccount"},
		{in: "system:serviceaccount:ns", wantErr: "malformed"},
		{in: "system:serviceaccount::sa", wantErr: "malformed"},
		{in: "system:serviceaccount:ns:", wantErr: "malformed"},
		{in: "system:serviceaccount:ns:a:b", wantErr: "malformed"},
		{in: "system:serviceaccount:Bad_NS:sa", wantErr: "namespace"},
		{in: "system:serviceaccount:ns:Bad_SA", wantErr: "ServiceAccount name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseServiceAccountUsername(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
