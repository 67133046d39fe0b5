package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// validate checks everything but the rules (compileRules checks those) and
// records each problem with the line of the offending value.
func (l *loader) validate(c *Config) {
	l.validateKafka(&c.Kafka)
	l.validateListen(c.Admin.Listen, true, "admin", "listen")
	l.validateOutcomes(c)
	l.validateDispatch(&c.Dispatch)
	l.validateRetry(&c.Retry)
	l.validateSchemas(&c.Schemas)
}

func (l *loader) validateKafka(k *Kafka) {
	for i, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil || strings.Contains(b, "://") {
			l.errs.add(l.itemLine(i, "kafka", "brokers"), "kafka.brokers[%d]: %q is not host:port", i, b)
		}
	}
	if len(k.Brokers) == 0 {
		l.validateListen(k.EmbeddedListen, false, "kafka", "embedded_listen")
	}
	l.validateFormat(k.Format, "kafka.format", l.lineOf("kafka", "format"))
	seen := map[string]bool{}
	for i, t := range k.Topics {
		where := fmt.Sprintf("kafka.topics[%d]", i)
		line := l.itemLine(i, "kafka", "topics")
		if l.errs.has(line) {
			continue // it did not decode; one message is enough
		}
		if msg := topicNameProblem(t.Name); msg != "" {
			l.errs.add(line, "%s: %s", where, msg)
		}
		if seen[t.Name] {
			l.errs.add(line, "%s: topic %q is listed twice", where, t.Name)
		}
		seen[t.Name] = true
		l.validateFormat(t.Format, where+".format", line)
	}
	l.nonNegative(k.MaxMessageBytes, "kafka", "max_message_bytes")
	if k.InitialOffset != "oldest" && k.InitialOffset != "newest" {
		l.errs.add(l.lineOf("kafka", "initial_offset"), "kafka.initial_offset: must be oldest or newest, got %q", k.InitialOffset)
	}
	if k.TLS.Enabled {
		for _, f := range []struct{ key, path string }{
			{"ca_file", k.TLS.CAFile}, {"cert_file", k.TLS.CertFile}, {"key_file", k.TLS.KeyFile},
		} {
			l.fileExists(f.path, "kafka", "tls", f.key)
		}
		if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			l.errs.add(l.lineOf("kafka", "tls"), "kafka.tls: cert_file and key_file go together; set both or neither")
		}
	}
	switch k.SASL.Mechanism {
	case "":
		if k.SASL.Username != "" || k.SASL.Password != "" {
			l.errs.add(l.lineOf("kafka", "sasl"), "kafka.sasl: username/password set without a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASL.Username == "" || k.SASL.Password == "" {
			l.errs.add(l.lineOf("kafka", "sasl"), "kafka.sasl: mechanism %s needs a username and a password", k.SASL.Mechanism)
		}
	default:
		l.errs.add(l.lineOf("kafka", "sasl", "mechanism"), "kafka.sasl.mechanism: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", k.SASL.Mechanism)
	}
}

// validateFormat accepts the wire formats schemas.ParseFormat knows.
func (l *loader) validateFormat(f, where string, line int) {
	switch f {
	case "json", "avro", "auto":
	default:
		l.errs.add(line, "%s: must be json, avro or auto, got %q", where, f)
	}
}

func (l *loader) validateOutcomes(c *Config) {
	o := c.Outcomes
	consumed := map[string]bool{}
	for _, t := range c.Kafka.Topics {
		consumed[t.Name] = true
	}
	seen := map[string]string{}
	for _, t := range []struct{ key, name string }{
		{"topic", o.Topic}, {"retry_topic", o.RetryTopic}, {"dead_letter_topic", o.DeadLetterTopic},
	} {
		line := l.lineOf("outcomes", t.key)
		if msg := topicNameProblem(t.name); msg != "" {
			l.errs.add(line, "outcomes.%s: %s", t.key, msg)
		}
		if other, dup := seen[t.name]; dup {
			l.errs.add(line, "outcomes.%s: %q is also outcomes.%s; each needs its own topic", t.key, t.name, other)
		}
		seen[t.name] = t.key
		if consumed[t.name] {
			l.errs.add(line, "outcomes.%s: %q is also in kafka.topics; apicall would consume its own output", t.key, t.name)
		}
	}
}

func (l *loader) validateDispatch(d *Dispatch) {
	for i, c := range d.AllowCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			l.errs.addErr(l.itemLine(i, "dispatch", "allow_cidrs"), err, "dispatch.allow_cidrs[%d]: %q is not a CIDR range such as 10.0.0.0/8", i, c)
		}
	}
	l.nonNegative(d.MaxInFlight, "dispatch", "max_in_flight")
	l.nonNegative(d.MaxInFlightTotal, "dispatch", "max_in_flight_total")
	l.nonNegative(d.MaxInFlightPerHost, "dispatch", "max_in_flight_per_host")
	l.nonNegative(d.MaxAttempts, "dispatch", "max_attempts")
	l.nonNegative(d.MaxRedirects, "dispatch", "max_redirects")
	if d.MaxInFlightTotal < d.MaxInFlight && d.MaxInFlightTotal > 0 {
		l.errs.add(l.lineOf("dispatch", "max_in_flight_total"), "dispatch.max_in_flight_total (%d) is below dispatch.max_in_flight (%d)", d.MaxInFlightTotal, d.MaxInFlight)
	}
	if d.Ordering != "none" && d.Ordering != "key" {
		l.errs.add(l.lineOf("dispatch", "ordering"), "dispatch.ordering: must be none or key, got %q", d.Ordering)
	}
	b := d.Breaker
	l.nonNegative(b.MinRequests, "dispatch", "breaker", "min_requests")
	l.nonNegative(b.HalfOpenRequests, "dispatch", "breaker", "half_open_requests")
	if b.FailureRatio <= 0 || b.FailureRatio > 1 {
		l.errs.add(l.lineOf("dispatch", "breaker", "failure_ratio"), "dispatch.breaker.failure_ratio: must be above 0 and at most 1, got %v", b.FailureRatio)
	}
	for _, name := range sortedKeys(d.Hosts) {
		h := d.Hosts[name]
		line := l.lineOf("dispatch", "hosts", name)
		where := "dispatch.hosts." + name
		if name == "" || strings.ContainsAny(name, "/?#@ ") {
			l.errs.add(line, "%s: key must be a host or host:port, without scheme or path", where)
		}
		if h.Rate < 0 {
			l.errs.add(line, "%s.rate: must not be negative, got %v", where, h.Rate)
		}
		if h.Burst < 0 {
			l.errs.add(line, "%s.burst: must not be negative, got %d", where, h.Burst)
		}
		if h.MaxInFlight < 0 {
			l.errs.add(line, "%s.max_in_flight: must not be negative, got %d", where, h.MaxInFlight)
		}
	}
}

func (l *loader) validateRetry(r *Retry) {
	for i, d := range r.Schedule {
		if d <= 0 {
			l.errs.add(l.itemLine(i, "retry", "schedule"), "retry.schedule[%d]: must be above zero, got %s", i, d)
		}
	}
	l.nonNegative(r.MaxAttempts, "retry", "max_attempts")
	l.nonNegative(r.MaxPending, "retry", "max_pending")
}

func (l *loader) validateSchemas(s *Schemas) {
	if s.RegistryURL != "" {
		u, err := url.Parse(s.RegistryURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.errs.add(l.lineOf("schemas", "registry_url"), "schemas.registry_url: %q is not an http(s) URL", s.RegistryURL)
		}
	}
	l.fileExists(s.RegistryCAFile, "schemas", "registry_ca_file")
	for i, f := range s.AvscFiles {
		l.fileExistsAt(f, l.itemLine(i, "schemas", "avsc_files"), fmt.Sprintf("schemas.avsc_files[%d]", i))
	}
}

// validateListen checks a listen address; "-" turns the endpoint off where
// allowed.
func (l *loader) validateListen(addr string, dashOff bool, keys ...string) {
	if dashOff && addr == "-" {
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		l.errs.add(l.lineOf(keys...), "%s: %q is not host:port", strings.Join(keys, "."), addr)
	}
}

func (l *loader) nonNegative(v int, keys ...string) {
	if v < 0 {
		l.errs.add(l.lineOf(keys...), "%s: must not be negative, got %d", strings.Join(keys, "."), v)
	}
}

// fileExists checks a configured file now rather than at the first
// connection, when the message would be far from the config.
func (l *loader) fileExists(p string, keys ...string) {
	l.fileExistsAt(p, l.lineOf(keys...), strings.Join(keys, "."))
}

func (l *loader) fileExistsAt(p string, line int, where string) {
	if p == "" {
		return
	}
	if _, err := os.Stat(p); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		l.errs.addErr(line, err, "%s: cannot use %q: %v", where, p, err)
	}
}

// topicNameProblem applies Kafka's topic naming rules, or returns "".
func topicNameProblem(name string) string {
	switch {
	case name == "":
		return "topic name is empty"
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a valid topic name", name)
	case len(name) > 249:
		return "topic name is longer than 249 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("topic name %s may only hold letters, digits, '.', '_' and '-'", strconv.Quote(name))
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
