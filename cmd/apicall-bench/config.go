package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/schemas"
)

const (
	benchTopic    = "user-events"
	apicallGroup  = "apicall-bench"
	baselineGroup = "apicall-bench-baseline"
	// unmatchedRules is how many rules are added that never fire: half
	// for other event names (skipped by the event-name index), half for
	// Register_newsletter with a condition that is false (evaluated on
	// every event).
	unmatchedRules = 50
)

// benchRule is a rule as written in YAML. Only the keys rules use in
// config/example.yaml are known; decoding is strict, so a new key there
// fails the benchmark instead of being silently dropped.
type benchRule struct {
	Name  string    `yaml:"name"`
	Path  any       `yaml:"path,omitempty"`
	Event string    `yaml:"event"`
	Topic string    `yaml:"topic,omitempty"`
	When  string    `yaml:"when,omitempty"`
	Call  benchCall `yaml:"call"`
}

type benchCall struct {
	Method         string            `yaml:"method,omitempty"`
	URL            string            `yaml:"url"`
	Headers        map[string]string `yaml:"headers,omitempty"`
	Extra          string            `yaml:"extra,omitempty"`
	ExcludeUser    bool              `yaml:"exclude_user,omitempty"`
	Timeout        string            `yaml:"timeout,omitempty"`
	MaxAttempts    int               `yaml:"max_attempts,omitempty"`
	SigningSecrets []string          `yaml:"signing_secrets,omitempty"`
}

// readRules reads the rules: section of a config file.
func readRules(path string) ([]benchRule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Rules []benchRule `yaml:"rules"`
		// The other sections are not the benchmark's; strict decoding
		// applies to the rules only.
		Other map[string]yaml.Node `yaml:",inline"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Rules) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	return doc.Rules, nil
}

// benchRules turns the example rules into the benchmark's: each rule's URL
// points at the receivers (with K hosts, K copies of the rule, copy i
// taking the users with id % K == i to host i), every URL carries the
// event's send time as bench_sent_ns, and unmatchedRules rules that never
// fire are appended.
func benchRules(example []benchRule, hosts []string) []benchRule {
	k := len(hosts)
	var out []benchRule
	for _, r := range example {
		for i, h := range hosts {
			c := r
			c.Call.URL = withHost(r.Call.URL, h)
			if strings.Contains(c.Call.URL, "?") {
				c.Call.URL += "&bench_sent_ns={{ data.sent_at_ns }}"
			} else {
				c.Call.URL += "?bench_sent_ns={{ data.sent_at_ns }}"
			}
			if k > 1 {
				c.Name = fmt.Sprintf("%s-host%d", r.Name, i)
				cond := fmt.Sprintf("user.id %% %d == %d", k, i)
				if r.When != "" {
					cond = "(" + r.When + ") && " + cond
				}
				c.When = cond
			}
			out = append(out, c)
		}
	}
	for i := range unmatchedRules {
		r := benchRule{
			Name:  fmt.Sprintf("bench-unmatched-%02d", i),
			Path:  1000 + i,
			Event: "Register_newsletter",
			Call:  benchCall{Method: "POST", URL: hosts[i%k] + "/never?rule=" + fmt.Sprint(i)},
		}
		if i%2 == 0 {
			r.Event = fmt.Sprintf("Bench_other_event_%02d", i)
		} else {
			r.When = fmt.Sprintf(`user.score > %d || user.country == "Atlantis-%d"`, 1000+i, i)
		}
		out = append(out, r)
	}
	return out
}

// withHost replaces the scheme and host of a rule URL (which may hold
// snippet tags, so it is not parsed) with base.
func withHost(u, base string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return base + "/" + strings.TrimPrefix(u, "/")
	}
	rest := u[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return base + rest[j:]
	}
	return base + "/"
}

// apicallConfig is the generated config file.
type apicallConfig struct {
	Kafka struct {
		Brokers []string `yaml:"brokers"`
		Topics  []string `yaml:"topics"`
		Group   string   `yaml:"group"`
	} `yaml:"kafka"`
	Admin struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin"`
	Dispatch struct {
		AllowPrivateNetworks bool `yaml:"allow_private_networks"`
		MaxInFlight          int  `yaml:"max_in_flight,omitempty"`
		MaxInFlightPerHost   int  `yaml:"max_in_flight_per_host,omitempty"`
	} `yaml:"dispatch"`
	Rules []benchRule `yaml:"rules"`
}

// writeConfig writes apicall's config for one run to path and loads it the
// way apicall will, so a bad config fails here with file:line messages.
func writeConfig(path, broker, admin string, maxInFlight, maxPerHost int, rules []benchRule) (*config.Config, error) {
	var c apicallConfig
	c.Kafka.Brokers = []string{broker}
	c.Kafka.Topics = []string{benchTopic}
	c.Kafka.Group = apicallGroup
	c.Admin.Listen = admin
	c.Dispatch.AllowPrivateNetworks = true
	c.Dispatch.MaxInFlight = maxInFlight
	c.Dispatch.MaxInFlightPerHost = maxPerHost
	c.Rules = rules
	var buf bytes.Buffer
	buf.WriteString("# generated by apicall-bench for one run\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("generated config: %w", err)
	}
	return cfg, nil
}

// expectedCalls counts the calls apicall must make for events [0, n):
// every event decoded and matched with the compiled rules, as apicall does.
func expectedCalls(cfg *config.Config, n int) (int, error) {
	rules := cfg.Compiled()
	dst := make([]*config.CompiledRule, 0, 16)
	var buf []byte
	calls := 0
	for i := range n {
		buf = appendEvent(buf[:0], i, 1)
		ev, err := schemas.DecodeJSON(benchTopic, buf)
		if err != nil {
			return 0, fmt.Errorf("event %d: %w", i, err)
		}
		ev.Topic = benchTopic
		dst = rules.Match(dst[:0], &ev)
		calls += len(dst)
	}
	return calls, nil
}
