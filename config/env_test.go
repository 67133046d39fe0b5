package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	vars := env(map[string]string{"A": "alpha", "EMPTY": "", "MULTI": "l1\nl2"})
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{"plain", "x: ${A}\n", "x: alpha\n", ""},
		{"twice on a line", "x: ${A}-${A}\n", "x: alpha-alpha\n", ""},
		{"default unused", "x: ${A:-d}\n", "x: alpha\n", ""},
		{"default when unset", "x: ${NOPE:-dev token}\n", "x: dev token\n", ""},
		{"default when empty", "x: ${EMPTY:-d}\n", "x: d\n", ""},
		{"empty default", "x: '${NOPE:-}'\n", "x: ''\n", ""},
		{"set but empty", "x: '${EMPTY}'\n", "x: ''\n", ""},
		{"escape", "x: $${A} and $$ and $x\n", "x: ${A} and $$ and $x\n", ""},
		{"comment line untouched", "  # token: ${NOPE}\nx: 1\n", "  # token: ${NOPE}\nx: 1\n", ""},
		{"no trailing newline", "x: ${A}", "x: alpha", ""},
		{"missing", "a: 1\nx: ${NOPE}\n", "", "t.yaml:2: environment variable NOPE is not set (write ${NOPE:-default} for a default, or $${ for a literal ${)"},
		{"bad name", "x: ${A-B}\n", "", "t.yaml:1: invalid environment variable reference ${A-B} (names are letters, digits and _, not starting with a digit)"},
		{"unterminated", "x: ${A\n", "", "t.yaml:1: unterminated ${ (close it with } on the same line, or write $${ for a literal ${)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := &errorList{file: "t.yaml"}
			x := expandEnv([]byte(tc.in), vars, errs)
			err := errs.err()
			switch {
			case tc.err != "":
				if err == nil || err.Error() != tc.err {
					t.Errorf("error = %v, want %s", err, tc.err)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case string(x.text) != tc.want:
				t.Errorf("got %q, want %q", x.text, tc.want)
			}
		})
	}
}

// TestExpandEnvKeepsLines: a value with newlines (a PEM block in a literal
// scalar) must not shift the line numbers of later messages.
func TestExpandEnvKeepsLines(t *testing.T) {
	src := "kafka:\n  topics: [t]\nx-pem: |\n  ${PEM}\nrules:\n  - name: r\n    event: E\n    call: {url: \"gopher://x\"}\n"
	_, err := Parse("c.yaml", []byte(src), env(map[string]string{"PEM": "-----BEGIN-----\n  abc\n  -----END-----"}))
	want := `c.yaml:8: rule "r": call.url: "gopher://x" must start with http:// or https://`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestRedact(t *testing.T) {
	cfg := mustParseEnv(t, `
kafka: {topics: [t]}
rules:
  - name: r
    event: E
    call:
      url: https://h.example/hook?key=${API_KEY}
      headers:
        Authorization: Bearer ${TOKEN}
        X-Plain: ${REGION:-eu}
      extra: '{"secret": "${TOKEN}"}'
`, map[string]string{"API_KEY": "k-123456", "TOKEN": "tok-abcdef"})
	for _, tc := range []struct{ in, want string }{
		{"GET https://h.example/hook?key=k-123456", "GET https://h.example/hook?key=****"},
		{"tok-abcdef and k-123456", "**** and ****"},
		{"region eu", "region ****"},
		{"nothing here", "nothing here"},
	} {
		if got := cfg.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var nilCfg *Config
	if nilCfg.Redact("x") != "x" {
		t.Error("nil Config must not redact")
	}

	ev := fixtureEvent(t)
	ev.Name = "E"
	var hidden, shown bytes.Buffer
	if err := Preview(&hidden, cfg, ev, fixtureTime, false); err != nil {
		t.Fatal(err)
	}
	if err := Preview(&shown, cfg, ev, fixtureTime, true); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"k-123456", "tok-abcdef"} {
		if strings.Contains(hidden.String(), secret) {
			t.Errorf("preview shows %s:\n%s", secret, hidden.String())
		}
		if !strings.Contains(shown.String(), secret) {
			t.Errorf("preview with showSecrets hides %s:\n%s", secret, shown.String())
		}
	}
}

// TestRedactErrors: a message quoting a value from ${ENV} hides it (check's
// output lands in CI logs).
func TestRedactErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte("kafka: {topics: [t]}\nrules:\n  - {name: r, event: E, call: {url: \"ftp://${HOST}/x\"}}\n"),
		env(map[string]string{"HOST": "internal-host"}))
	if err == nil || strings.Contains(err.Error(), "internal-host") || !strings.Contains(err.Error(), "ftp://****/x") {
		t.Errorf("error = %v", err)
	}
}

func mustParseEnv(t *testing.T, text string, vars map[string]string) *Config {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(text), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
