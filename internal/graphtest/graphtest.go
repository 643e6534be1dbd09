// Package graphtest is a local HTTPS server that speaks the wire formats the
// Graph source uses: Entra ID's token endpoint (client credentials) and
// Microsoft Graph's user lookup and getPresencesByUserId, with the faults
// Graph shows (429 with Retry-After, 5xx, users left out of an answer).
package graphtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// Server is a fake Entra ID and Graph for one test.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	secrets  map[string]string // client id → secret
	tokens   map[string]string // access token → client id
	issued   map[string]int    // client id → tokens issued
	users    map[string]string // lower-case UPN → object id
	presence map[string]Presence
	missing  map[string]bool
	faults   []Fault
	calls    map[string][]time.Time // client id → Graph calls
	polled   [][]string             // the ids of each presence request
	lookups  int
	clock    clockwork.Clock // the time calls are recorded at
}

// Presence is what Graph answers for one user.
type Presence struct{ Availability, Activity string }

// Fault is answered, instead of the real answer, to the next Count Graph
// calls (token requests excluded).
type Fault struct {
	Status     int
	RetryAfter string
	Count      int
}

// Start runs the server until the test ends.
func Start(t testing.TB) *Server { return StartWithClock(t, clockwork.NewRealClock()) }

// StartWithClock runs the server, recording calls at the clock's time: the
// provider's fake clock, for tests of the budget's spacing.
func StartWithClock(t testing.TB, clock clockwork.Clock) *Server {
	s := &Server{secrets: map[string]string{}, tokens: map[string]string{}, issued: map[string]int{},
		users: map[string]string{}, presence: map[string]Presence{}, missing: map[string]bool{},
		calls: map[string][]time.Time{}, clock: clock}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.openIDConfiguration)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.token)
	mux.HandleFunc("GET /v1.0/users/{upn}", s.graph(s.user))
	mux.HandleFunc("POST /v1.0/communications/getPresencesByUserId", s.graph(s.presences))
	s.Server = httptest.NewTLSServer(mux)
	t.Cleanup(s.Close)
	return s
}

// BaseURL is the Graph root, for PRESENCE_GRAPH_BASE_URL.
func (s *Server) BaseURL() string { return s.URL + "/v1.0" }

// AuthorityHost is the token authority, for PRESENCE_GRAPH_AUTHORITY_HOST.
func (s *Server) AuthorityHost() string { return s.URL + "/" }

// App registers a client id and its secret.
func (s *Server) App(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[clientID] = secret
}

// User adds a Teams user and returns its object id.
func (s *Server) User(upn string, p Presence) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("00000000-0000-0000-0000-%012d", len(s.users)+1)
	s.users[strings.ToLower(upn)] = id
	s.presence[id] = p
	return id
}

// Set changes a user's presence.
func (s *Server) Set(upn string, p Presence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence[s.users[strings.ToLower(upn)]] = p
}

// Omit makes answers leave the user out (omit true) or not.
func (s *Server) Omit(upn string, omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missing[s.users[strings.ToLower(upn)]] = omit
}

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Calls is the Graph calls made with a client's tokens, in order.
func (s *Server) Calls(clientID string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls[clientID]...)
}

// Polled is the ids of each presence request, in order.
func (s *Server) Polled() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.polled...)
}

// TokensIssued is how many tokens the client got.
func (s *Server) TokensIssued(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[clientID]
}

// Lookups is how many UPN lookups were answered.
func (s *Server) Lookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func graphError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	base := s.URL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// token serves the client-credentials grant, checking the secret (or
// accepting a certificate's signed assertion).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		graphError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	client := r.PostForm.Get("client_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	want, known := s.secrets[client]
	assertion := r.PostForm.Get("client_assertion") != ""
	if !known || (!assertion && r.PostForm.Get("client_secret") != want) || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client",
			"error_description": "AADSTS7000215: Invalid client secret provided."})
		return
	}
	s.issued[client]++
	token := fmt.Sprintf("token-%s-%d", client, s.issued[client])
	s.tokens[token] = client
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})
}

// graph authenticates a Graph call, records it and answers a queued fault
// before the real answer.
func (s *Server) graph(serve func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		client, ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		if !ok {
			s.mu.Unlock()
			graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
			return
		}
		s.calls[client] = append(s.calls[client], s.clock.Now())
		var fault *Fault
		if len(s.faults) > 0 {
			f := s.faults[0]
			fault = &f
			if s.faults[0].Count--; s.faults[0].Count <= 0 {
				s.faults = s.faults[1:]
			}
		}
		s.mu.Unlock()
		if fault != nil {
			if fault.RetryAfter != "" {
				w.Header().Set("Retry-After", fault.RetryAfter)
			}
			graphError(w, fault.Status, "InjectedFault", http.StatusText(fault.Status))
			return
		}
		serve(w, r)
	}
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.lookups++
	id, ok := s.users[strings.ToLower(r.PathValue("upn"))]
	s.mu.Unlock()
	if !ok || r.URL.Query().Get("$select") != "id" {
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound",
			fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", r.PathValue("upn")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

func (s *Server) presences(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		graphError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if len(req.IDs) > 650 {
		graphError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The number of ids (%d) exceeds the limit of 650.", len(req.IDs)))
		return
	}
	s.mu.Lock()
	s.polled = append(s.polled, req.IDs)
	value := []map[string]string{}
	for _, id := range req.IDs {
		p, ok := s.presence[id]
		if ok && !s.missing[id] {
			value = append(value, map[string]string{"id": id, "availability": p.Availability, "activity": p.Activity})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": s.BaseURL() + "/$metadata#Collection(presence)", "value": value})
}
