package config

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// Most conditions are comparisons of looked-up fields with constants joined
// by && and || (user.country == "USA" && user.emails_enabled). Running
// those on expr's VM costs more than the lookups they make: the end-to-end
// profile of the benchmark's 27 conditions per event put VM.Run's own work
// (stack, env map fetch of the lookup function, dispatch) at about 6% of
// apicall's CPU. fastCond evaluates that subset of the compiled program's
// tree directly, with expr's own runtime helpers for every operator, so the
// values and the comparisons are the VM's.
//
// Whenever it meets something the VM would report as an error (a non-bool
// operand of &&, a comparison of a string with a number, anything that
// panics) it gives up and the rule runs on the VM as before, which reports
// the error its own way. A tree holding any node outside the subset gets no
// fastCond at all. FuzzFastCond checks both paths agree.

// fastCond is one node of a condition compiled for direct evaluation.
type fastCond struct {
	op   fastOp
	l, r *fastCond
	val  any // fastConst
	id   int // fastLookup
}

type fastOp uint8

const (
	fastConst fastOp = iota
	fastLookup
	fastAnd
	fastOr
	fastNot
	fastEqual       // runtime.Equal
	fastEqualInt    // both sides typed int: the VM's OpEqualInt
	fastEqualString // both sides typed string: the VM's OpEqualString
	fastNotEqual
	fastNotEqualInt
	fastNotEqualString
	fastLess
	fastMore
	fastLessOrEqual
	fastMoreOrEqual
	fastIn
	fastAdd
	fastSubtract
	fastMultiply
	fastDivide
	fastModulo
)

// binaryOps maps expr operators to fast ops (== and != are chosen in
// compileFast, as the compiler does).
var binaryOps = map[string]fastOp{
	"&&": fastAnd, "and": fastAnd,
	"||": fastOr, "or": fastOr,
	"<": fastLess, ">": fastMore, "<=": fastLessOrEqual, ">=": fastMoreOrEqual,
	"in": fastIn,
	"+":  fastAdd, "-": fastSubtract, "*": fastMultiply, "/": fastDivide, "%": fastModulo,
}

// compileFast returns the direct form of prog, or nil when its tree holds
// anything outside the subset.
func compileFast(prog *vm.Program) *fastCond {
	return fastNode(prog.Node())
}

func fastNode(n ast.Node) *fastCond {
	switch n := n.(type) {
	case *ast.CallNode:
		// Only the patched lookups: $lookup(<constant id>).
		callee, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || callee.Value != lookupFunc || len(n.Arguments) != 1 {
			return nil
		}
		id, ok := n.Arguments[0].(*ast.IntegerNode)
		if !ok {
			return nil
		}
		return &fastCond{op: fastLookup, id: id.Value}
	case *ast.IntegerNode:
		// The compiler pushes an int unless the checker typed the constant
		// otherwise (a float context, say): those are left to the VM.
		if t := n.Type(); t != nil && t.Kind() != reflect.Int {
			return nil
		}
		return &fastCond{op: fastConst, val: n.Value}
	case *ast.FloatNode:
		if t := n.Type(); t != nil && t.Kind() == reflect.Float32 {
			return nil
		}
		return &fastCond{op: fastConst, val: n.Value}
	case *ast.StringNode:
		return &fastCond{op: fastConst, val: n.Value}
	case *ast.BoolNode:
		return &fastCond{op: fastConst, val: n.Value}
	case *ast.NilNode:
		return &fastCond{op: fastConst, val: nil}
	case *ast.ConstantNode:
		return &fastCond{op: fastConst, val: n.Value}
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil
		}
		x := fastNode(n.Node)
		if x == nil {
			return nil
		}
		return &fastCond{op: fastNot, l: x}
	case *ast.BinaryNode:
		l, r := fastNode(n.Left), fastNode(n.Right)
		if l == nil || r == nil {
			return nil
		}
		op, ok := binaryOps[n.Operator]
		switch n.Operator {
		case "==", "!=":
			op, ok = equalOp(n), true
		}
		if !ok {
			return nil
		}
		return &fastCond{op: op, l: l, r: r}
	}
	return nil
}

// equalOp picks the comparison the compiler emits for n (see its
// equalBinaryNode): typed int == int and string == string assert their
// operands' types (a float in an int context is an error), anything else
// is runtime.Equal.
func equalOp(n *ast.BinaryNode) fastOp {
	l, r := typeKind(n.Left), typeKind(n.Right)
	simple := simpleType(n.Left) && simpleType(n.Right)
	eq := fastEqual
	switch {
	case l == r && l == reflect.Int && simple:
		eq = fastEqualInt
	case l == r && l == reflect.String && simple:
		eq = fastEqualString
	}
	if n.Operator == "!=" {
		eq += fastNotEqual - fastEqual
	}
	return eq
}

func typeKind(n ast.Node) reflect.Kind {
	if t := n.Type(); t != nil {
		return t.Kind()
	}
	return reflect.Invalid
}

func simpleType(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.PkgPath() == ""
}

// run evaluates c; ok is false when the VM has to (see above), which
// includes a result that is not a bool (the VM's AsBool cast reports it).
func (c *fastCond) run(e *whenEnv) (b, ok bool) {
	defer func() {
		if recover() != nil {
			b, ok = false, false
		}
	}()
	b, ok = c.eval(e).(bool)
	return b, ok
}

// eval mirrors the VM's opcodes: type assertions that fail panic, as they
// do in the VM, and run turns the panic into "ask the VM".
func (c *fastCond) eval(e *whenEnv) any {
	switch c.op {
	case fastConst:
		return c.val
	case fastLookup:
		return e.lookupID(c.id)
	case fastAnd:
		l := c.l.eval(e)
		if !l.(bool) {
			return l
		}
		return c.r.eval(e)
	case fastOr:
		l := c.l.eval(e)
		if l.(bool) {
			return l
		}
		return c.r.eval(e)
	case fastNot:
		return !c.l.eval(e).(bool)
	}
	a, b := c.l.eval(e), c.r.eval(e)
	switch c.op {
	case fastEqual:
		return runtime.Equal(a, b)
	case fastEqualInt:
		return a.(int) == b.(int)
	case fastEqualString:
		return a.(string) == b.(string)
	case fastNotEqual:
		return !runtime.Equal(a, b)
	case fastNotEqualInt:
		return a.(int) != b.(int)
	case fastNotEqualString:
		return a.(string) != b.(string)
	case fastLess:
		return runtime.Less(a, b)
	case fastMore:
		return runtime.More(a, b)
	case fastLessOrEqual:
		return runtime.LessOrEqual(a, b)
	case fastMoreOrEqual:
		return runtime.MoreOrEqual(a, b)
	case fastIn:
		return runtime.In(a, b)
	case fastAdd:
		return runtime.Add(a, b)
	case fastSubtract:
		return runtime.Subtract(a, b)
	case fastMultiply:
		return runtime.Multiply(a, b)
	case fastDivide:
		return runtime.Divide(a, b)
	case fastModulo:
		return runtime.Modulo(a, b)
	}
	panic("config: unknown fast op")
}
