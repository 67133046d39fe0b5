// Package config loads apicall's YAML configuration, expands ${ENV}
// references, validates it with file:line errors, and compiles the rules into
// an immutable set that matches events and renders API calls. It is pure: no
// network, no Kafka.
package config

import (
	"encoding/json"
	"net/http"
	"time"
)

// Config is the whole configuration file. Zero values are replaced by the
// documented defaults in Load (see applyDefaults), so code that receives a
// *Config from Load can use every field as is.
type Config struct {
	Kafka    Kafka    `yaml:"kafka"`
	Admin    Admin    `yaml:"admin"`
	Outcomes Outcomes `yaml:"outcomes"`
	Dispatch Dispatch `yaml:"dispatch"`
	Retry    Retry    `yaml:"retry"`
	Schemas  Schemas  `yaml:"schemas"`
	Rules    []Rule   `yaml:"rules"`

	// Path is the file the config was loaded from (for messages).
	Path string `yaml:"-"`
	// compiled is built by Load; see Compiled.
	compiled *Rules
	// secrets are the values that came from ${ENV} expansion; Redact hides them.
	secrets []string
}

// Kafka is where events come from.
type Kafka struct {
	// Brokers to bootstrap from. Empty means: start the embedded
	// Kafka-protocol broker on EmbeddedListen and use it.
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is the embedded broker's address; "" means 127.0.0.1:9092.
	EmbeddedListen string `yaml:"embedded_listen"`
	// EmbeddedDataDir keeps the embedded broker's log; "" means ".apicall/kafka"
	// next to the working directory. "-" keeps nothing (memory only).
	EmbeddedDataDir string `yaml:"embedded_data_dir"`
	// Group is the consumer group; "" means "apicall".
	Group string `yaml:"group"`
	// Topics to consume. Each entry is a topic name or {name, format}.
	Topics []Topic `yaml:"topics"`
	// Format is the default wire format of Topics: json, avro or auto ("" = auto).
	Format string `yaml:"format"`
	// ClientID sent to brokers; "" means "apicall".
	ClientID string `yaml:"client_id"`
	// MaxMessageBytes: larger records are dead-lettered; 0 means 1 MiB.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// InitialOffset for a group with no commit: "oldest" (default) or "newest".
	InitialOffset string `yaml:"initial_offset"`
	// CommitInterval between offset commits; 0 means 200ms.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// TLS for real clusters; zero value means plaintext.
	TLS TLS `yaml:"tls"`
	// SASL for real clusters; zero value means no authentication.
	SASL SASL `yaml:"sasl"`
}

// Topic is one consumed topic.
type Topic struct {
	Name string `yaml:"name"`
	// Format: json, avro or auto; "" means Kafka.Format.
	Format string `yaml:"format"`
}

// TLS configures TLS to the brokers.
type TLS struct {
	// Enabled turns TLS on; the other fields are ignored when false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of CAs; "" means the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate; "" means none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL configures broker authentication.
type SASL struct {
	// Mechanism: "" (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Admin is the HTTP endpoint for /metrics, /healthz and /readyz.
type Admin struct {
	// Listen address; "" means 127.0.0.1:9464, "-" disables it.
	Listen string `yaml:"listen"`
}

// Outcomes names the topics apicall writes to.
type Outcomes struct {
	// Topic for one outcome record per (event, rule); "" means "apicall.outcomes".
	Topic string `yaml:"topic"`
	// RetryTopic holds parked calls; "" means "apicall.retry".
	RetryTopic string `yaml:"retry_topic"`
	// DeadLetterTopic holds undecodable events and calls out of retries;
	// "" means "apicall.dead-letter".
	DeadLetterTopic string `yaml:"dead_letter_topic"`
}

// Dispatch tunes how calls are sent.
type Dispatch struct {
	// AllowPrivateNetworks lets calls reach loopback, private, link-local
	// and metadata addresses. False (default) refuses them (SSRF guard).
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
	// AllowCIDRs opens only these ranges while the guard stays on.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// MaxInFlight is the cap of events in flight per partition; 0 means 1024.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxInFlightTotal caps events in flight across partitions; 0 means 1024 (enough for 50,000 calls/s to a 20 ms receiver; each one holds its record and a goroutine stack, so this is what bounds memory).
	MaxInFlightTotal int `yaml:"max_in_flight_total"`
	// MaxInFlightPerHost caps concurrent calls to one host; 0 means 512.
	MaxInFlightPerHost int `yaml:"max_in_flight_per_host"`
	// HostWait is how long a call may wait for a free slot of its host's
	// cap before it is parked instead (so a slow host cannot hold the
	// partition); 0 means 1s.
	HostWait time.Duration `yaml:"host_wait"`
	// Timeout per attempt when a rule sets none; 0 means 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts in process before a call is parked; 0 means 3.
	MaxAttempts int `yaml:"max_attempts"`
	// Ordering: "" or "none" (no order promised) or "key" (calls for the
	// same Kafka record key are sent in offset order).
	Ordering string `yaml:"ordering"`
	// ShutdownGrace bounds how long in-flight calls may finish on stop or
	// rebalance; 0 means 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxRedirects followed (each re-checked by the SSRF guard); 0 means none.
	MaxRedirects int `yaml:"max_redirects"`
	// NetHTTP sends every call through Go's net/http client (which can
	// speak HTTP/2) instead of the cheaper HTTP/1.1 fast path; false means
	// the fast path for every call it can carry (see dispatcher/fast.go).
	NetHTTP bool `yaml:"net_http"`
	// Breaker settings shared by every host's breaker.
	Breaker Breaker `yaml:"breaker"`
	// Hosts holds per-host overrides keyed by host[:port].
	Hosts map[string]Host `yaml:"hosts"`
}

// Breaker configures the per-host circuit breakers.
type Breaker struct {
	// Window is the rolling window for the failure ratio; 0 means 30s.
	Window time.Duration `yaml:"window"`
	// MinRequests in the window before the breaker may trip; 0 means 20.
	MinRequests int `yaml:"min_requests"`
	// FailureRatio that trips the breaker; 0 means 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// OpenTimeout before a half-open probe; 0 means 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenRequests allowed while probing; 0 means 1.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// Host overrides dispatch settings for one destination host.
type Host struct {
	// Rate limits requests per second; 0 means unlimited.
	Rate float64 `yaml:"rate"`
	// Burst for Rate; 0 means max(1, Rate).
	Burst int `yaml:"burst"`
	// MaxInFlight overrides Dispatch.MaxInFlightPerHost; 0 keeps it.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Retry configures delayed retries from the retry topic.
type Retry struct {
	// Schedule is the delay before each re-attempt from the retry topic;
	// empty means [10s, 1m, 10m, 1h, 6h]. The last entry repeats.
	Schedule []time.Duration `yaml:"schedule"`
	// MaxAttempts across all parking cycles before dead-lettering; 0 means 6.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge since the first attempt before dead-lettering; 0 means 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxPending caps parked calls held in memory waiting for their time;
	// 0 means 10000. Reading the retry topic pauses at the cap.
	MaxPending int `yaml:"max_pending"`
}

// Schemas configures Avro decoding.
type Schemas struct {
	// RegistryURL of a Confluent-compatible schema registry; "" means none
	// (Confluent-framed records then fail with unknown_schema).
	RegistryURL      string `yaml:"registry_url"`
	RegistryUsername string `yaml:"registry_username"`
	RegistryPassword string `yaml:"registry_password"`
	// RegistryCAFile is a PEM bundle for the registry's TLS; "" = system.
	RegistryCAFile string `yaml:"registry_ca_file"`
	// AvscFiles are extra .avsc schemas for single-object encoding, in
	// addition to the embedded ones.
	AvscFiles []string `yaml:"avsc_files"`
}

// Rule is one trigger rule as written in the file.
type Rule struct {
	// Name is unique in the file; used in metrics, outcomes, idempotency keys.
	Name string `yaml:"name"`
	// Path is the id sent as "path" in the body (integer or string).
	Path any `yaml:"path"`
	// Event is the event name that triggers the rule; "*" matches any.
	Event string `yaml:"event"`
	// Topic restricts the rule to one source topic; "" means any.
	Topic string `yaml:"topic"`
	// When is an optional expr-lang condition over the event.
	When string `yaml:"when"`
	// Call is the API call to make.
	Call Call `yaml:"call"`

	// Line is where the rule starts in the file (for messages).
	Line int `yaml:"-"`
}

// Call is the "API call" action of a rule. The same type carries both
// sides of it: as written in the file (Headers and Extra hold snippet-tag
// templates) and, as returned by CompiledRule.Render, the concrete request
// for one event (Header and Body rendered, URL with tags substituted,
// Method, Timeout and MaxAttempts defaulted). The rendered fields are never
// read from YAML.
type Call struct {
	// Method: GET, POST, PUT, PATCH or DELETE; "" means POST.
	Method string `yaml:"method"`
	// URL with snippet tags in path segments and query values.
	URL string `yaml:"url"`
	// Headers sent with the call; values may hold snippet tags.
	Headers map[string]string `yaml:"headers"`
	// Extra is the "Extra data (JSON)" text; "" means {}.
	Extra string `yaml:"extra"`
	// ExcludeUser leaves the user profile out of the body.
	ExcludeUser bool `yaml:"exclude_user"`
	// Timeout per attempt; 0 means Dispatch.Timeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts in process before parking; 0 means Dispatch.MaxAttempts.
	MaxAttempts int `yaml:"max_attempts"`
	// SigningSecrets sign each call (Standard Webhooks); several allow
	// rotation. Empty means unsigned. Shared with the rule: do not modify.
	SigningSecrets []string `yaml:"signing_secrets"`

	// Rule is the name of the rule that rendered the call.
	Rule string `yaml:"-"`
	// Path is the rule's path as JSON (6 or "welcome"); shared with the
	// rule: do not modify.
	Path json.RawMessage `yaml:"-"`
	// Header holds the rendered headers, Content-Type included unless GET.
	// It is the caller's to extend (Idempotency-Key, User-Agent, signing).
	Header http.Header `yaml:"-"`
	// Body is the JSON body {"path","timestamp","extra","user"}; nil for GET.
	Body []byte `yaml:"-"`
	// IdempotencyKey is IdempotencyKey(topic, partition, offset, rule) of
	// the event's source position: the same on every redelivery and replay.
	IdempotencyKey string `yaml:"-"`
	// MissingTags counts snippet tags that had no value (missing or null,
	// and no default); they rendered as "".
	MissingTags int `yaml:"-"`

	// bodyBuf lets ReleaseBody recycle Body, box lets Release recycle the
	// Call, both into the pools of box.rules (Render sets them).
	bodyBuf *[]byte
	box     *callBox
}
