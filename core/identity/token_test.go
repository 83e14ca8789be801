package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testAudience = "identity.conduit.dev"

// jwt builds an unsigned JWT-shaped token with the given claims.
func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(payload) + ".c2ln"
}

func TestTokenReviewValidator(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fresh := now.Add(time.Hour).Unix()
	tests := []struct {
		name     string
		token    string
		status   authnv1.TokenReviewStatus
		apiErr   error
		wantUser string
		wantKind TokenErrorKind
		noReview bool
	}{
		{
			name:     "authenticated",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{testAudience}, User: authnv1.UserInfo{Username: "system:serviceaccount:ns:sa"}},
			wantUser: "system:serviceaccount:ns:sa",
		},
		{
			name:     "audience not confirmed",
			token:    jwt(t, map[string]any{"aud": testAudience, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:ns:sa"}},
			wantKind: TokenWrongAudience,
		},
		{
			name:     "expired",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": now.Add(-time.Minute).Unix()}),
			status:   authnv1.TokenReviewStatus{Error: "[invalid bearer token, square/go-jose/jwt: validation failed, token is expired (exp)]"},
			wantKind: TokenExpired,
		},
		{
			name:     "wrong audience",
			token:    jwt(t, map[string]any{"aud": []string{"https://kubernetes.default.svc.cluster.local"}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: "[invalid bearer token, token audiences [...] is invalid for the target audiences [identity.conduit.dev]]"},
			wantKind: TokenWrongAudience,
		},
		{
			name:     "deleted ServiceAccount",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: `[invalid bearer token, serviceaccounts "web" not found]`},
			wantKind: TokenAccountNotFound,
		},
		{
			// What a real API server answers for a token whose pod was deleted
			// (pkg/serviceaccount's validator hides the pod's name).
			name:     "bound pod deleted",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has been invalidated]"},
			wantKind: TokenAccountNotFound,
		},
		{
			name:     "bound pod recreated under the same name",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: "[invalid bearer token, pod UID (8f1c) does not match claim (2b7e)]"},
			wantKind: TokenAccountNotFound,
		},
		{
			name:     "deleted ServiceAccount awaiting removal",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: "[invalid bearer token, service account emojivoto/web has been deleted]"},
			wantKind: TokenAccountNotFound,
		},
		{
			name:     "refused for another reason",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			status:   authnv1.TokenReviewStatus{Error: "invalid bearer token"},
			wantKind: TokenInvalid,
		},
		{
			name:     "API server unreachable",
			token:    jwt(t, map[string]any{"aud": []string{testAudience}, "exp": fresh}),
			apiErr:   errors.New("connection refused"),
			wantKind: TokenReviewFailed,
		},
		{name: "empty", token: "", wantKind: TokenMalformed, noReview: true},
		{name: "not a JWT", token: "abc", wantKind: TokenMalformed, noReview: true},
		{name: "bad base64", token: "a.!!!.c", wantKind: TokenMalformed, noReview: true},
		{name: "payload not JSON", token: "a." + base64.RawURLEncoding.EncodeToString([]byte("[1")) + ".c", wantKind: TokenMalformed, noReview: true},
		{name: "trailing newline", token: jwt(t, map[string]any{}) + "\n", wantKind: TokenMalformed, noReview: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			reviews := 0
			client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				reviews++
				tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
				if tr.Spec.Token != tt.token || len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != testAudience {
					t.Errorf("TokenReview spec = %+v, want the token and audience %q", tr.Spec, testAudience)
				}
				if tt.apiErr != nil {
					return true, nil, tt.apiErr
				}
				out := tr.DeepCopy()
				out.Status = tt.status
				return true, out, nil
			})
			v := &TokenReviewValidator{Client: client, Audience: testAudience, Now: func() time.Time { return now }}
			user, err := v.Validate(context.Background(), tt.token)
			if tt.noReview && reviews != 0 {
				t.Errorf("a malformed token was sent to the API server")
			}
			if tt.wantKind == "" {
				if err != nil || user != tt.wantUser {
					t.Fatalf("Validate = %q, %v; want %q", user, err, tt.wantUser)
				}
				return
			}
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TokenError", err)
			}
			if te.Kind != tt.wantKind {
				t.Errorf("kind = %s, want %s (%v)", te.Kind, tt.wantKind, err)
			}
		})
	}
}
