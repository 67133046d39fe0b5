package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Load reads the config file at path and returns it ready to use: ${NAME}
// references expanded from lookupEnv (nil means os.LookupEnv), decoded
// strictly, defaults applied, validated and the rules compiled.
//
// Every problem is reported at once: the error is *Errors, one
// `file:line: message` per problem. Load never panics on bad input.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{{File: path, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err}}
	}
	return Parse(path, data, lookupEnv)
}

// Parse is Load for a config already in memory; name is used in messages
// (a file path, or "-" for standard input). Relative file paths in the
// config (TLS files, .avsc files) are checked as given, against the working
// directory.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	errs := &errorList{file: name}
	x := expandEnv(data, lookupEnv, errs)

	cfg := &Config{Path: name, secrets: x.secrets}
	root, err := parseYAML(x.text)
	if err != nil {
		line, msg := yamlErrorLine(err)
		errs.addErr(x.origLine(line), err, "invalid YAML: %s", cfg.Redact(msg))
		return nil, errs.err()
	}

	var top *yaml.Node
	if root != nil && len(root.Content) > 0 {
		top = root.Content[0]
		d := decoder{errs: errs, line: x.origLine}
		d.decode(top, reflect.ValueOf(cfg).Elem(), "")
	}

	l := &loader{errs: errs, top: top, line: x.origLine}
	applyDefaults(cfg)
	l.validate(cfg)
	rules := l.compileRules(cfg)
	if len(errs.errs) > 0 {
		// Messages quote values (a URL, a header); those from ${ENV} are
		// secrets and check's output ends up in CI logs.
		for _, e := range errs.errs {
			e.Msg = cfg.Redact(e.Msg)
		}
		return nil, errs.err()
	}
	cfg.compiled = rules
	return cfg, nil
}

// Compiled returns the rule set built by Load. It is immutable and safe for
// concurrent use; nil for a Config not made by Load.
func (c *Config) Compiled() *Rules {
	if c == nil {
		return nil
	}
	return c.compiled
}

// loader holds what validation needs to put a line on each message.
type loader struct {
	errs *errorList
	top  *yaml.Node // the document's top mapping; nil for an empty file
	line func(int) int
}

// lineOf returns the original line of the value at keys below the top of
// the file, or of its closest parent present in the file, so a message
// about a defaulted or missing value still points somewhere useful.
func (l *loader) lineOf(keys ...string) int {
	if l.top == nil {
		return 0
	}
	return l.line(nodeAt(l.top, keys...).Line)
}

// itemLine returns the line of the i-th item of the list at keys, or the
// list's line.
func (l *loader) itemLine(i int, keys ...string) int {
	if l.top == nil {
		return 0
	}
	n := nodeAt(l.top, keys...)
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		n = n.Content[i]
	}
	return l.line(n.Line)
}

// ruleNode returns the mapping node of the i-th rule, or nil.
func (l *loader) ruleNode(i int) *yaml.Node {
	rules := child(l.top, "rules")
	if rules == nil || rules.Kind != yaml.SequenceNode || i >= len(rules.Content) {
		return nil
	}
	return rules.Content[i]
}

// parseYAML parses exactly one YAML document; a second document is refused
// because it would be silently ignored.
func parseYAML(text []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(text))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty file
		}
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, fmt.Errorf("yaml: line %d: a second YAML document (---) is not supported; put everything in one", more.Line)
	}
	return &root, nil
}

// yamlLine matches the position yaml.v3 puts in its syntax errors; the
// library exposes no structured position, so the text is all there is.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErrorLine splits a yaml.v3 syntax error into its line and message.
func yamlErrorLine(err error) (int, string) {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	n, _ := strconv.Atoi(m[1])
	return n, m[2]
}
