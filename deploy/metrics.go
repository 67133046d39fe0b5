// Package deploy holds apicall's deployment artifacts: the Dockerfile, the
// Kubernetes manifests (kubernetes/), the Prometheus alert rules
// (prometheus/) and the Grafana dashboard (grafana/). Its Go code exists for
// tests only: MetricNames lists the metrics those artifacts query, so a test
// can check each one against what a running apicall exposes.
package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// metricRE matches an apicall metric name inside a PromQL expression.
var metricRE = regexp.MustCompile(`\bapicall_[a-z0-9_]*[a-z0-9]\b`)

// histogramNames are the histogram families of the metrics contract
// (docs/internals.md). Queries use their _bucket, _sum and _count series;
// MetricNames reports the family name instead.
func histogramNames() []string {
	return []string{
		"apicall_commit_duration_seconds",
		"apicall_delivery_duration_seconds",
	}
}

// MetricNames returns the sorted, distinct apicall metric family names that
// the artifacts under dir (the deploy directory) query: every expr of the
// Prometheus rule files in dir/prometheus (YAML files with a top-level
// "groups" key) and every expr and variable query of the Grafana dashboards
// in dir/grafana. Series of a histogram (name_bucket, name_sum, name_count)
// are reported as the family name, as in the # TYPE line of /metrics.
//
// It fails when a file does not parse or when no names are found at all
// (usually a wrong dir).
func MetricNames(dir string) ([]string, error) {
	var exprs []string

	rules, err := filesWithExt(filepath.Join(dir, "prometheus"), ".yaml", ".yml")
	if err != nil {
		return nil, err
	}
	for _, path := range rules {
		e, err := ruleExprs(path)
		if err != nil {
			return nil, err
		}
		exprs = append(exprs, e...)
	}

	dashboards, err := filesWithExt(filepath.Join(dir, "grafana"), ".json")
	if err != nil {
		return nil, err
	}
	for _, path := range dashboards {
		e, err := dashboardExprs(path)
		if err != nil {
			return nil, err
		}
		exprs = append(exprs, e...)
	}

	var names []string
	for _, e := range exprs {
		for _, m := range metricRE.FindAllString(e, -1) {
			names = append(names, family(m))
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no apicall metric names in the rules and dashboards under %s", dir)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// family maps a histogram's _bucket, _sum or _count series to the
// histogram's name; other names are returned unchanged.
func family(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(histogramNames(), base) {
			return base
		}
	}
	return name
}

// filesWithExt lists the files directly in dir whose names end with one of
// exts, sorted. A missing dir is not an error (no files).
func filesWithExt(dir string, exts ...string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if e.IsDir() || !slices.Contains(exts, filepath.Ext(e.Name())) {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	return paths, nil
}

// ruleFile is the part of a Prometheus rule file that holds expressions.
// Groups is nil for other YAML files (promtool unit tests, for example).
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleExprs returns the expressions of the rule file at path, or none when
// the file is YAML but not a rule file.
func ruleExprs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var exprs []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs, nil
}

// dashboardExprs returns every PromQL string of the Grafana dashboard at
// path: panel targets' "expr" and template variables' "query" and
// "definition", wherever they are nested (rows, library panels).
func dashboardExprs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if s, ok := child.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
					continue
				}
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(doc)
	return exprs, nil
}
