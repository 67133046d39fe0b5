package consumer

import (
	"strings"
	"testing"

	"github.com/apicall/apicall/config"
)

func maskSecret(s string) string { return strings.ReplaceAll(s, "s3cret", "****") }

func TestURLRedactor(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"http://crm.example.com/hooks/newsletter?email=a%40b.c&source=x", "http://crm.example.com/hooks/newsletter?email=REDACTED&source=REDACTED"},
		{"http://crm.example.com/hooks/newsletter?source=y&email=d%40e.f", "http://crm.example.com/hooks/newsletter?email=REDACTED&source=REDACTED"},
		{"https://user:pw@h.example/p/s3cret?token=s3cret#frag", "https://h.example/p/****?token=REDACTED"},
		{"http://h/p?a=1&a=2&b", "http://h/p?a=REDACTED&b=REDACTED"},
		{"http://h/p?a=%zz&b=1", "http://h/p?b=REDACTED"},
		{"http://h/p?a=1;c=2&b=1", "http://h/p?b=REDACTED"},
		{"http://h/p", "http://h/p"},
		{"http://h/p?", "http://h/p?"},
		{"http://h/%zz?a=1", "(unparsable url)"},
		{"http://h/p?a=\x01", "(unparsable url)"},
		{"http://h/a%20b?x+y=1", "http://h/a%20b?x+y=REDACTED"},
	} {
		r := newURLRedactor(maskSecret)
		for pass := range 2 { // the second pass is answered from the cache
			if got := r.url(tc.raw); got != tc.want {
				t.Errorf("pass %d: url(%q) = %q, want %q", pass, tc.raw, got, tc.want)
			}
		}
	}
}

// The cache must never answer for a URL what the long way would not: a
// URL redacted after another of the same shape gets its own result.
func FuzzURLRedactorCache(f *testing.F) {
	f.Add("http://h/p?a=1&b=2", "http://h/p?a=%zz&b=2")
	f.Add("http://h/p?a=1", "http://h/p?a=1;b")
	f.Add("https://u@h:8/p#x?y=1", "https://h:8/p?y=1#z")
	f.Fuzz(func(t *testing.T, a, b string) {
		r := newURLRedactor(maskSecret)
		for _, raw := range []string{a, b, a, b} {
			if got, want := r.url(raw), r.compute(raw); got != want {
				t.Fatalf("url(%q) = %q, the long way gives %q (after %q)", raw, got, want, a)
			}
		}
	})
}

func BenchmarkURLRedactor(b *testing.B) {
	raw := "http://crm.example.com/hooks/newsletter?email=john%40example.org&source=website&bench_sent_ns=1764000000000000000"
	r := newURLRedactor(maskSecret)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.url(raw)
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.compute(raw)
		}
	})
}

// After a reload, outcome URLs are masked with the secrets of the reloaded
// file, and nothing cached for the old rule set is reused.
func TestURLRedactorFollowsReloadedSecrets(t *testing.T) {
	load := func(token string) *config.Config {
		t.Helper()
		src := "kafka: {brokers: [x:9092], topics: [t]}\nrules:\n  - name: r\n    event: E\n    call: {url: \"https://h.example/${TOKEN}/hook?email={{ user.email }}\"}\n"
		cfg, err := config.Parse("c.yaml", []byte(src), func(k string) (string, bool) {
			if k == "TOKEN" {
				return token, true
			}
			return "", false
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first, reloaded := load("tok-first"), load("tok-second")
	c := &Consumer{cfg: first}
	for _, tc := range []struct {
		rules *config.Rules
		raw   string
	}{
		{first.Compiled(), "https://h.example/tok-first/hook?email=a%40b.c"},
		{reloaded.Compiled(), "https://h.example/tok-second/hook?email=a%40b.c"},
		{reloaded.Compiled(), "https://h.example/tok-second/hook?email=d%40e.f"},
	} {
		if got, want := c.redactorFor(tc.rules).url(tc.raw), "https://h.example/****/hook?email=REDACTED"; got != want {
			t.Errorf("url(%q) = %q, want %q", tc.raw, got, want)
		}
	}
}
