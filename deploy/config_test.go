package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// configDecl holds the struct types of package config, read from its source
// with go/parser so this test does not depend on the package compiling.
type configDecl struct {
	structs   map[string]*ast.StructType
	unmarshal map[string]bool // types with an UnmarshalYAML method
}

func parseConfigPackage(t *testing.T) configDecl {
	t.Helper()
	paths, err := filepath.Glob("../config/*.go")
	if err != nil {
		t.Fatal(err)
	}
	decl := configDecl{structs: map[string]*ast.StructType{}, unmarshal: map[string]bool{}}
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if ts, ok := s.(*ast.TypeSpec); ok {
						if st, ok := ts.Type.(*ast.StructType); ok {
							decl.structs[ts.Name.Name] = st
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv != nil && d.Name.Name == "UnmarshalYAML" && len(d.Recv.List) == 1 {
					typ := d.Recv.List[0].Type
					if star, ok := typ.(*ast.StarExpr); ok {
						typ = star.X
					}
					if id, ok := typ.(*ast.Ident); ok {
						decl.unmarshal[id.Name] = true
					}
				}
			}
		}
	}
	if decl.structs["Config"] == nil {
		t.Fatal("../config: no type Config")
	}
	return decl
}

// check reports every key of n that type typ of package config has no
// field for, and scalars that cannot be decoded into typ.
func (c configDecl) check(t *testing.T, path string, n *yaml.Node, typ ast.Expr) {
	t.Helper()
	switch typ := typ.(type) {
	case *ast.StarExpr:
		c.check(t, path, n, typ.X)
	case *ast.InterfaceType:
		// any: whatever YAML says.
	case *ast.SelectorExpr:
		if id, ok := typ.X.(*ast.Ident); ok && id.Name == "time" && typ.Sel.Name == "Duration" {
			if _, err := time.ParseDuration(n.Value); n.Kind != yaml.ScalarNode || err != nil {
				t.Errorf("config.yaml:%d: %s: %q is not a duration", n.Line, path, n.Value)
			}
		}
	case *ast.ArrayType:
		if n.Kind != yaml.SequenceNode {
			t.Errorf("config.yaml:%d: %s: want a list", n.Line, path)
			return
		}
		for i, e := range n.Content {
			c.check(t, path+"["+strconv.Itoa(i)+"]", e, typ.Elt)
		}
	case *ast.MapType:
		if n.Kind != yaml.MappingNode {
			t.Errorf("config.yaml:%d: %s: want a mapping", n.Line, path)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.check(t, path+"."+n.Content[i].Value, n.Content[i+1], typ.Value)
		}
	case *ast.Ident:
		st, ok := c.structs[typ.Name]
		if !ok {
			if typ.Name == "any" {
				return
			}
			// string, bool, int, float64, ...
			if n.Kind != yaml.ScalarNode {
				t.Errorf("config.yaml:%d: %s: want a %s", n.Line, path, typ.Name)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			if !c.unmarshal[typ.Name] {
				t.Errorf("config.yaml:%d: %s: want a mapping (config.%s)", n.Line, path, typ.Name)
			}
			return
		}
		fields := map[string]ast.Expr{}
		for _, f := range st.Fields.List {
			if f.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(f.Tag.Value)
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				t.Errorf("config.yaml:%d: unknown key %s.%s (no such field in config.%s)", k.Line, path, k.Value, typ.Name)
				continue
			}
			c.check(t, path+"."+k.Value, n.Content[i+1], ft)
		}
	}
}

// TestConfigMapKeys: every key of the ConfigMap's config.yaml is a field of
// config.Config (Load decodes with known fields only, so a typo would stop
// every pod at start-up).
func TestConfigMapKeys(t *testing.T) {
	decl := parseConfigPackage(t)
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(configYAML(t, objects(t))), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) != 1 {
		t.Fatal("config.yaml is empty")
	}
	decl.check(t, "config", doc.Content[0], ast.NewIdent("Config"))
}
