package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TokenValidator authenticates a pod's ServiceAccount token. Validate returns
// the authenticated username ("system:serviceaccount:<ns>:<sa>") or a
// *TokenError saying why the token is refused.
type TokenValidator interface {
	Validate(ctx context.Context, token string) (username string, err error)
}

// TokenErrorKind classifies why a token was refused.
type TokenErrorKind string

// The kinds of refused tokens; each is counted and logged apart.
const (
	TokenMalformed       TokenErrorKind = "token_malformed"
	TokenExpired         TokenErrorKind = "token_expired"
	TokenWrongAudience   TokenErrorKind = "token_wrong_audience"
	TokenAccountNotFound TokenErrorKind = "token_account_not_found"
	TokenInvalid         TokenErrorKind = "token_invalid"
	// TokenReviewFailed means the API server could not be asked: the token may be good.
	TokenReviewFailed TokenErrorKind = "token_review_failed"
)

// TokenError is a refused token.
type TokenError struct {
	Kind   TokenErrorKind
	Detail string
	Err    error
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("identity: %s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("identity: %s: %s", e.Kind, e.Detail)
}

func (e *TokenError) Unwrap() error { return e.Err }

// claims are the JWT claims used to explain a refusal. They are read without
// verifying the signature and never used to accept a token.
type claims struct {
	Exp float64         `json:"exp"`
	Aud json.RawMessage `json:"aud"`
}

func (c claims) audiences() []string {
	var many []string
	if json.Unmarshal(c.Aud, &many) == nil {
		return many
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// parseUnverified checks that token is shaped as a JWS compact JWT and returns its claims.
func parseUnverified(token string) (claims, error) {
	var c claims
	if token == "" {
		return c, errors.New("the token is empty")
	}
	if strings.TrimSpace(token) != token {
		return c, errors.New("the token has leading or trailing white space")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return c, fmt.Errorf("the token has %d dot-separated parts, a JWT has 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("the token payload is not base64url: %w", err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("the token payload is not a JSON object: %w", err)
	}
	return c, nil
}

// TokenReviewValidator validates tokens with the Kubernetes TokenReview API,
// requiring Audience. Its ServiceAccount needs `create` on
// authentication.k8s.io/tokenreviews (the system:auth-delegator ClusterRole).
type TokenReviewValidator struct {
	Client   kubernetes.Interface
	Audience string
	// Now is the clock used to explain an expired token (time.Now when nil).
	Now func() time.Time
}

// Validate implements TokenValidator.
func (v *TokenReviewValidator) Validate(ctx context.Context, token string) (string, error) {
	c, err := parseUnverified(token)
	if err != nil {
		return "", &TokenError{Kind: TokenMalformed, Detail: err.Error()}
	}
	tr, err := v.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{v.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", &TokenError{Kind: TokenReviewFailed, Detail: "the TokenReview request to the API server failed", Err: err}
	}
	st := tr.Status
	if !st.Authenticated {
		return "", v.explain(c, st.Error)
	}
	// An audience-unaware authenticator would accept any audience: insist on ours.
	if !slices.Contains(st.Audiences, v.Audience) {
		return "", &TokenError{Kind: TokenWrongAudience, Detail: fmt.Sprintf("the API server did not confirm the audience %q (it returned %q)", v.Audience, st.Audiences)}
	}
	return st.User.Username, nil
}

// explain classifies a token the API server refused, from its error and the unverified claims.
func (v *TokenReviewValidator) explain(c claims, apiErr string) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	lower := strings.ToLower(apiErr)
	detail := "the API server refused the token"
	if apiErr != "" {
		detail += ": " + apiErr
	}
	switch {
	case c.Exp > 0 && now().After(time.Unix(int64(c.Exp), 0)):
		return &TokenError{Kind: TokenExpired, Detail: fmt.Sprintf("the token expired at %s", time.Unix(int64(c.Exp), 0).UTC().Format(time.RFC3339))}
	case len(c.audiences()) > 0 && !slices.Contains(c.audiences(), v.Audience):
		return &TokenError{Kind: TokenWrongAudience, Detail: fmt.Sprintf("the token is for audience %q, not %q (mount a projected ServiceAccount token with audience %q)", c.audiences(), v.Audience, v.Audience)}
	case strings.Contains(lower, "not found") || strings.Contains(lower, "deleted") || strings.Contains(lower, "does not exist"),
		// What the API server says when the pod (or Secret) a token is bound to
		// is gone or awaiting removal, or was recreated under the same name.
		strings.Contains(lower, "invalidated"),
		strings.Contains(lower, "uid") && strings.Contains(lower, "does not match"):
		return &TokenError{Kind: TokenAccountNotFound, Detail: detail}
	case strings.Contains(lower, "expired"):
		return &TokenError{Kind: TokenExpired, Detail: detail}
	}
	return &TokenError{Kind: TokenInvalid, Detail: detail}
}
