package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/tidwall/gjson"

	"github.com/apicall/apicall/schemas"
)

// A rule's `when` is an expr-lang condition over user, data and event.
// Decoding the profile of every event into maps for expr to walk would cost
// more than the rest of the hot path together, so at compile time every
// member access rooted at user, data or event (user.country,
// user.tags[0].name) is patched into a call of lookupFunc with a constant
// lookup id; at run time that call is one gjson scan of the raw bytes,
// cached for the rest of the Match call so rules sharing a lookup pay once.
// Only what a condition touches is ever looked at.

// lookupFunc is the name patched member accesses call. A condition that
// names it (or any $identifier) is refused, so it cannot be called with
// made-up ids or shadowed.
const lookupFunc = "$lookup"

// conditions compiles the `when` of every rule of one file and owns the
// table of lookups they share.
type conditions struct {
	refs []ref
	ids  map[ref]int
}

// id returns the lookup id of r, adding it on first use.
func (c *conditions) id(r ref) int {
	if id, ok := c.ids[r]; ok {
		return id
	}
	id := len(c.refs)
	c.refs = append(c.refs, r)
	c.ids[r] = id
	return id
}

// compile compiles one condition to a program that must return a bool.
func (c *conditions) compile(src string) (*vm.Program, error) {
	p := &refPatcher{conds: c, refs: map[ast.Node]ref{}}
	prog, err := expr.Compile(src,
		expr.Env(map[string]any{lookupFunc: (func(any) any)(nil)}),
		expr.AsBool(),
		expr.Patch(p),
	)
	if p.err != nil {
		return nil, p.err
	}
	if err != nil {
		return nil, oneLine(err)
	}
	return prog, nil
}

// oneLine turns expr's multi-line error (message, source line, caret) into
// one line, as `file:line: message` output needs.
func oneLine(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("%s (column %d)", fe.Message, fe.Column+1)
	}
	return err
}

// refPatcher rewrites user / data / event member chains into lookup calls.
// ast.Walk visits children first, so in user.tags[0] the identifier user is
// patched first, then each member access extends the lookup below it.
type refPatcher struct {
	conds *conditions
	refs  map[ast.Node]ref // the lookup calls made here and what they read
	err   error
}

var roots = map[string]source{"user": srcUser, "data": srcData, "event": srcEvent}

func (p *refPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		// Only nodes from the condition's text get here (the calls made
		// below are not walked), so this refuses $env and $lookup as written.
		if strings.HasPrefix(n.Value, "$") && p.err == nil {
			p.err = fmt.Errorf("%s is not available in conditions; use user, data or event", n.Value)
		}
		if src, ok := roots[n.Value]; ok {
			p.replace(node, ref{src: src})
		}
	case *ast.MemberNode:
		base, ok := p.refs[n.Node]
		if !ok {
			return
		}
		var key string
		switch prop := n.Property.(type) {
		case *ast.StringNode:
			key = prop.Value
		case *ast.IntegerNode:
			if prop.Value < 0 {
				return // negative index: expr indexes the looked-up list
			}
			key = strconv.Itoa(prop.Value)
		default:
			return // computed key: expr indexes the looked-up value
		}
		p.replace(node, base.child(key))
	case *ast.VariableDeclaratorNode:
		if _, ok := roots[n.Name]; ok && p.err == nil {
			p.err = fmt.Errorf("let %s: user, data and event cannot be redeclared", n.Name)
		}
	}
}

func (p *refPatcher) replace(node *ast.Node, r ref) {
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: lookupFunc},
		Arguments: []ast.Node{&ast.IntegerNode{Value: p.conds.id(r)}},
	}
	ast.Patch(node, call)
	p.refs[call] = r
}

// whenEnv is what one Match call evaluates conditions with. It is pooled
// per Rules: the expr VM, the lookup cache and the map expr sees are reused,
// so evaluating a condition allocates nothing in the common case.
type whenEnv struct {
	refs []ref // shared, read-only
	ev   *schemas.Event
	env  map[string]any // {lookupFunc: e.lookup}, built once
	vm   vm.VM
	vals []any
	have []bool
	// last holds, per lookup, the last scalar value seen as a copy, so a
	// low-cardinality field (country, plan) is boxed for expr once, not
	// once per event.
	last []interned
}

type interned struct {
	typ gjson.Type
	raw string
	val any
}

// maxInterned bounds the size of a remembered value.
const maxInterned = 128

func newWhenEnv(refs []ref) *whenEnv {
	e := &whenEnv{
		refs: refs,
		vals: make([]any, len(refs)),
		have: make([]bool, len(refs)),
		last: make([]interned, len(refs)),
	}
	e.env = map[string]any{lookupFunc: e.lookup}
	return e
}

// reset forgets the event, so a pooled env keeps no event's bytes alive
// (lookups may point into them).
func (e *whenEnv) reset() {
	e.ev = nil
	clear(e.vals)
	clear(e.have)
	clear(e.vm.Stack[:cap(e.vm.Stack)])
	clear(e.vm.Variables)
}

// lookup is lookupFunc: the value of lookup id for the current event, as
// expr wants it (nil for missing or null; int for integral numbers).
func (e *whenEnv) lookup(arg any) any {
	id, ok := arg.(int)
	if !ok {
		return nil
	}
	return e.lookupID(id)
}

// lookupID is lookup for an id already known to be an int (fastCond).
func (e *whenEnv) lookupID(id int) any {
	if id < 0 || id >= len(e.refs) {
		return nil
	}
	if e.have[id] {
		return e.vals[id]
	}
	v := e.convert(id, e.refs[id].result(e.ev))
	e.vals[id], e.have[id] = v, true
	return v
}

// convert turns a lookup result into the value expr sees, reusing the
// value remembered for id when the event holds the same one.
func (e *whenEnv) convert(id int, res gjson.Result) any {
	switch res.Type {
	case gjson.Null:
		return nil
	case gjson.True:
		return true
	case gjson.False:
		return false
	}
	key := res.Raw
	if res.Type == gjson.String {
		key = res.Str
	}
	last := &e.last[id]
	if last.val != nil && last.typ == res.Type && last.raw == key {
		return last.val
	}
	if len(key) > maxInterned {
		return exprValue(res) // used during this call only
	}
	// Keep a copy: res may point into the event's bytes.
	key = strings.Clone(key)
	var v any
	switch res.Type {
	case gjson.String:
		v = key
	case gjson.JSON:
		v = gjson.Parse(key).Value()
	default:
		v = exprValue(gjson.Result{Type: res.Type, Raw: key, Num: res.Num})
	}
	*last = interned{typ: res.Type, raw: key, val: v}
	return v
}

// exprValue converts a gjson value: integral numbers become int so that
// user.page_views == 1 and len(...) arithmetic behave as written.
func exprValue(res gjson.Result) any {
	switch res.Type {
	case gjson.String:
		return res.Str
	case gjson.Number:
		if !strings.ContainsAny(res.Raw, ".eE") {
			if n, err := strconv.ParseInt(res.Raw, 10, 0); err == nil {
				return int(n)
			}
		}
		return res.Num
	case gjson.JSON:
		return res.Value()
	case gjson.True:
		return true
	case gjson.False:
		return false
	}
	return nil
}
