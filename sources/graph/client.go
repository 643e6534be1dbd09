package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/rs/zerolog"
)

// MaxIDsPerRequest is getPresencesByUserId's limit.
const MaxIDsPerRequest = 650

// graphScope asks Entra ID for a token to Microsoft Graph with the app's
// granted permissions (Presence.Read.All, User.Read.All).
const graphScope = "https://graph.microsoft.com/.default"

// client makes the two Graph calls the source needs, for one account.
type client struct {
	http *http.Client
	base string // Graph root, without a trailing slash
	cred azcore.TokenCredential
	// answered is told of every request that left, with Graph's status
	// (0 for none: no answer came).
	answered func(status int)
	log      zerolog.Logger
}

// httpError is a Graph answer other than success; RetryAfter is set from the
// header of a 429 or 503.
type httpError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *httpError) Error() string {
	msg := fmt.Sprintf("graph answered %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// graphPresence is one entry of getPresencesByUserId's answer.
type graphPresence struct {
	ID           string `json:"id"`
	Availability string `json:"availability"`
	Activity     string `json:"activity"`
}

// userID resolves a UPN to its Entra object id.
func (c *client) userID(ctx context.Context, upn string) (string, error) {
	var user struct {
		ID string `json:"id"`
	}
	path := "/users/" + url.PathEscape(upn) + "?$select=id"
	if err := c.call(ctx, http.MethodGet, path, 0, nil, &user); err != nil {
		return "", err
	}
	if user.ID == "" {
		return "", fmt.Errorf("graph: user %s: answer without an id", upn)
	}
	return user.ID, nil
}

// presences reads the presence of at most MaxIDsPerRequest users.
func (c *client) presences(ctx context.Context, ids []string) ([]graphPresence, error) {
	if len(ids) > MaxIDsPerRequest {
		return nil, fmt.Errorf("graph: %d ids in one request; at most %d", len(ids), MaxIDsPerRequest)
	}
	var answer struct {
		Value []graphPresence `json:"value"`
	}
	body := map[string][]string{"ids": ids}
	if err := c.call(ctx, http.MethodPost, "/communications/getPresencesByUserId", len(ids), body, &answer); err != nil {
		return nil, err
	}
	return answer.Value, nil
}

// call sends one authenticated request and decodes the JSON answer; ids is
// the number of users a presence request asks for, for the log.
func (c *client) call(ctx context.Context, method, path string, ids int, in, out any) error {
	token, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{graphScope}})
	if err != nil {
		return &tokenError{err: err}
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	res, err := c.http.Do(req)
	status := 0
	if res != nil {
		status = res.StatusCode
	}
	c.answered(status)
	// The path names the user a lookup asks for; a presence request's
	// users are only counted. Never the token nor a body.
	c.log.Debug().Str("method", method).Str("path", strings.SplitN(path, "?", 2)[0]).Int("ids", ids).
		Int("status", status).Dur("took", time.Since(start)).AnErr("error", err).Msg("Graph request")
	if err != nil {
		return fmt.Errorf("graph: %s %s: %w", method, strings.SplitN(path, "?", 2)[0], err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("graph: read answer: %w", err)
	}
	if res.StatusCode/100 != 2 {
		return answerError(res, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("graph: answer is not JSON: %w", err)
	}
	return nil
}

func answerError(res *http.Response, data []byte) error {
	e := &httpError{Status: res.StatusCode, RetryAfter: retryAfter(res.Header.Get("Retry-After"))}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}

// retryAfter reads Retry-After in seconds, fractions included ("2.128"), or
// as an HTTP date.
func retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// tokenError is a failure to get a token from Entra ID. Its text is
// azidentity's, which names the tenant and client but never the secret.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "graph: token: " + e.err.Error() }

func (e *tokenError) Unwrap() error { return e.err }

func isStatus(err error, status int) bool {
	var h *httpError
	return errors.As(err, &h) && h.Status == status
}
