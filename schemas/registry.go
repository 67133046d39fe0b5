package schemas

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// RegistryOptions configures a Confluent-compatible schema registry client.
type RegistryOptions struct {
	// URL of the registry, e.g. https://registry:8081. Credentials in the
	// URL's user info are used for basic auth when Username is empty, and
	// never appear in errors.
	URL string
	// Username and Password for HTTP basic auth; empty Username means none.
	Username string
	Password string
	// CAFile is a PEM file of CA certificates trusted in addition to the
	// system pool; "" means the system pool only. Only used when HTTPClient
	// is nil.
	CAFile string
	// Timeout bounds each HTTP request; 0 means 5s.
	Timeout time.Duration
	// Attempts is how many times a request is tried when the registry is
	// unreachable or answers 5xx/408/429; 0 means 3. The retries are quick
	// (50 ms, then 100 ms): longer outages are the consumer's to wait out,
	// with the partition paused.
	Attempts int
	// HTTPClient to use; nil means a client of its own (with CAFile).
	HTTPClient *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
}

// Registry is a small client for the two calls apicall needs of a
// Confluent-compatible schema registry: fetch a schema by id, register one.
type Registry struct {
	base     string // URL without user info or trailing slash; safe to print
	user     string
	pass     string
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	client   *http.Client
	ownsHTTP bool // client built here: Close may drop its idle connections
	log      *slog.Logger
}

// RegistrySchema is what GET /schemas/ids/{id} returns.
type RegistrySchema struct {
	Schema string `json:"schema"`
	// SchemaType is "AVRO", "PROTOBUF" or "JSON"; empty means AVRO.
	SchemaType string `json:"schemaType"`
}

// StatusError is a registry answer other than success. Status 404 also
// matches ErrSchemaNotFound.
type StatusError struct {
	Status int
	Body   string // the start of the response body (registry error message)
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("registry answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

func (e *StatusError) Is(target error) bool {
	return target == ErrSchemaNotFound && e.Status == http.StatusNotFound
}

// NewRegistry checks the options and builds a client.
func NewRegistry(opts RegistryOptions) (*Registry, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registry URL %q: want http(s)://host[:port][/path]", redactURL(opts.URL))
	}
	r := &Registry{
		user: opts.Username, pass: opts.Password,
		timeout: opts.Timeout, attempts: opts.Attempts, backoff: 50 * time.Millisecond,
		client: opts.HTTPClient, log: opts.Logger,
	}
	if u.User != nil {
		if r.user == "" {
			r.user = u.User.Username()
			r.pass, _ = u.User.Password()
		}
		u.User = nil
	}
	r.base = strings.TrimSuffix(u.String(), "/")
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.attempts <= 0 {
		r.attempts = 3
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "schema-registry", "registry", r.base)
	switch {
	case r.client != nil && opts.CAFile != "":
		return nil, errors.New("registry: set either HTTPClient or CAFile, not both")
	case r.client == nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if opts.CAFile != "" {
			pool, err := caPool(opts.CAFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		r.client = &http.Client{Transport: tr}
		r.ownsHTTP = true
	}
	return r, nil
}

// Close drops idle keep-alive connections of the client NewRegistry built
// (each holds two goroutines, which leak checkers in tests would report). A
// caller-supplied HTTPClient is left alone. The Registry remains usable.
func (r *Registry) Close() {
	if r.ownsHTTP {
		r.client.CloseIdleConnections()
	}
}

func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("registry CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("registry CA file %s: no PEM certificates", file)
	}
	return pool, nil
}

// redactURL hides credentials in a URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// SchemaByID fetches the schema with a Confluent schema id
// (GET /schemas/ids/{id}). A 404 matches ErrSchemaNotFound; every other
// failure means the registry could not answer.
func (r *Registry) SchemaByID(ctx context.Context, id uint32) (RegistrySchema, error) {
	var rs RegistrySchema
	err := r.do(ctx, http.MethodGet, "/schemas/ids/"+strconv.FormatUint(uint64(id), 10), nil, &rs)
	if err != nil {
		return RegistrySchema{}, fmt.Errorf("schema id %d: %w", id, err)
	}
	if rs.Schema == "" {
		return RegistrySchema{}, fmt.Errorf("schema id %d: registry answered without a schema", id)
	}
	r.log.Debug("fetched schema", "id", id)
	return rs, nil
}

// RegisterSchema registers an Avro schema under a subject
// (POST /subjects/{subject}/versions) and returns its id. Registering a
// schema the subject already has returns the existing id.
func (r *Registry) RegisterSchema(ctx context.Context, subject, schema string) (uint32, error) {
	body, err := json.Marshal(map[string]string{"schema": schema})
	if err != nil {
		return 0, err
	}
	var resp struct {
		ID *int64 `json:"id"`
	}
	if err := r.do(ctx, http.MethodPost, "/subjects/"+url.PathEscape(subject)+"/versions", body, &resp); err != nil {
		return 0, fmt.Errorf("register schema under %q: %w", subject, err)
	}
	if resp.ID == nil || *resp.ID < 0 || *resp.ID > 1<<32-1 {
		return 0, fmt.Errorf("register schema under %q: registry answered without a valid id", subject)
	}
	return uint32(*resp.ID), nil
}

// retryable reports whether another attempt may help.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Status == http.StatusRequestTimeout || se.Status == http.StatusTooManyRequests
	}
	var de *decodeBodyError
	return !errors.As(err, &de) // transport errors and timeouts
}

// decodeBodyError is a 2xx answer whose body is not what the API promises;
// retrying will not change it.
type decodeBodyError struct{ err error }

func (e *decodeBodyError) Error() string { return "unexpected response body: " + e.err.Error() }
func (e *decodeBodyError) Unwrap() error { return e.err }

// do runs one API call with quick retries; out receives the JSON answer.
func (r *Registry) do(ctx context.Context, method, path string, body []byte, out any) error {
	var err error
	for attempt := range r.attempts {
		if attempt > 0 {
			t := time.NewTimer(r.backoff << (attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (after: %w)", ctx.Err(), err)
			case <-t.C:
			}
			r.log.Debug("retrying registry call", "path", path, "attempt", attempt+1, "err", err)
		}
		if err = r.once(ctx, method, path, body, out); err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// maxRegistryBody bounds what we read of a registry answer (schemas are a
// few KiB; a misconfigured URL might serve anything).
const maxRegistryBody = 4 << 20

func (r *Registry) once(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// *url.Error carries the URL, which has no credentials (stripped in
		// NewRegistry); it says which host was unreachable.
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRegistryBody))
		resp.Body.Close()
	}()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRegistryBody))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, r.base+path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return &StatusError{Status: resp.StatusCode, Body: msg}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &decodeBodyError{err}
	}
	return nil
}
