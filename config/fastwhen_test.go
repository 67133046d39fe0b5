package config

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apicall/apicall/schemas"
)

// condGen builds random conditions and events from a random source, for
// comparing fastCond with expr's VM on the same inputs.
type condGen struct{ r *rand.Rand }

var (
	genRefs = []string{
		"user.a", "user.b", "user.n", "user.flag", "user.none", "user.missing",
		"user.list", "user.obj", "user.obj.k", "user.list[0]", "data.x", "data.plan", "event.name",
	}
	genLits = []string{
		"0", "1", "2", "-3", "1000", "1.5", "0.0", `"a"`, `"USA"`, `""`, "true", "false", "nil",
		`["a", "b"]`, `[1, 2]`, "1e3",
	}
	genOps = []string{
		"==", "!=", "<", ">", "<=", ">=", "&&", "||", "and", "or", "in", "+", "-", "*", "/", "%",
	}
	genValues = []string{
		"0", "1", "2", "-3", "1000", "1.5", "2.0", "1e3", `"a"`, `"USA"`, `""`, `"1"`, "true", "false",
		"null", `["a", "b"]`, `[]`, `{"k": "a"}`, `{"k": 1}`, `{}`, "12345678901234567890",
	}
)

// cond returns a condition shaped like real ones (comparisons joined by
// logic) most of the time, and an arbitrary expression otherwise.
func (g condGen) cond(depth int) string {
	switch n := g.r.IntN(10); {
	case n < 2:
		return g.expr(depth)
	case depth > 2 || n < 6:
		return g.compare(depth)
	case n < 7:
		return "!(" + g.cond(depth+1) + ")"
	default:
		return "(" + g.cond(depth+1) + " " + pick(g.r, "&&", "||", "and", "or") + " " + g.cond(depth+1) + ")"
	}
}

func (g condGen) compare(depth int) string {
	if g.r.IntN(8) == 0 {
		return genRefs[g.r.IntN(len(genRefs))] // a bare field: user.flag
	}
	op := pick(g.r, "==", "!=", "<", ">", "<=", ">=", "in")
	return g.value(depth) + " " + op + " " + g.value(depth)
}

func (g condGen) value(depth int) string {
	switch n := g.r.IntN(10); {
	case n < 5:
		return genRefs[g.r.IntN(len(genRefs))]
	case n < 9 || depth > 2:
		return genLits[g.r.IntN(len(genLits))]
	default:
		return "(" + g.value(depth+1) + " " + pick(g.r, "+", "-", "*", "/", "%") + " " + g.value(depth+1) + ")"
	}
}

// expr is any expression over the operators fastCond knows.
func (g condGen) expr(depth int) string {
	switch n := g.r.IntN(10); {
	case depth > 3 || n < 3:
		if g.r.IntN(2) == 0 {
			return genRefs[g.r.IntN(len(genRefs))]
		}
		return genLits[g.r.IntN(len(genLits))]
	case n < 4:
		return pick(g.r, "!", "not ") + g.expr(depth+1)
	default:
		return "(" + g.expr(depth+1) + " " + genOps[g.r.IntN(len(genOps))] + " " + g.expr(depth+1) + ")"
	}
}

func pick(r *rand.Rand, s ...string) string { return s[r.IntN(len(s))] }

func (g condGen) object(keys ...string) string {
	var parts []string
	for _, k := range keys {
		if g.r.IntN(6) == 0 {
			continue // missing
		}
		parts = append(parts, fmt.Sprintf("%q: %s", k, genValues[g.r.IntN(len(genValues))]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (g condGen) event() *schemas.Event {
	user := g.object("a", "b", "n", "flag", "none", "list", "obj")
	data := g.object("x", "plan")
	raw := `{"name": "Register_newsletter", "user": ` + user + `, "data": ` + data + `}`
	return &schemas.Event{Name: "Register_newsletter", User: []byte(user), Data: []byte(data), Raw: []byte(raw)}
}

// checkFastCond compares fastCond with the VM on one random condition and
// event; it reports whether the condition had a fast form and whether the
// fast form answered (rather than handing over to the VM).
func checkFastCond(t *testing.T, g condGen) (hasFast, answered bool) {
	t.Helper()
	src := g.cond(0)
	conds := &conditions{ids: map[ref]int{}}
	prog, err := conds.compile(src)
	if err != nil {
		return false, false // refused at load time: nothing to run
	}
	fast := compileFast(prog)
	if fast == nil {
		return false, false
	}
	ev := g.event()
	fe, ve := newWhenEnv(conds.refs), newWhenEnv(conds.refs)
	fe.ev, ve.ev = ev, ev
	fout, ok := fast.run(fe)
	vout, verr := ve.vm.Run(prog, ve.env)
	if ok && (verr != nil || vout != fout) {
		t.Fatalf("%s\nevent %s\nfast: %#v\nVM:   %#v (error %v)", src, ev.Raw, fout, vout, verr)
	}

	// The same through a rule's eval: answer and error count agree.
	rf := &CompiledRule{when: prog, whenFast: fast}
	rv := &CompiledRule{when: prog}
	fe.reset()
	ve.reset()
	fe.ev, ve.ev = ev, ev
	fb, ferr := rf.eval(fe)
	vb, verr2 := rv.eval(ve)
	if fb != vb || (ferr == nil) != (verr2 == nil) || rf.WhenErrors() != rv.WhenErrors() {
		t.Fatalf("%s\nevent %s\neval with fastCond: %v, %v; VM only: %v, %v", src, ev.Raw, fb, ferr, vb, verr2)
	}
	return true, ok
}

// TestFastCondMatchesVM runs thousands of random conditions over random
// events through both evaluators. It also requires that many conditions
// get a fast form and that the fast form both answers and hands over, so
// the comparison covers both paths.
func TestFastCondMatchesVM(t *testing.T) {
	const n = 20000
	var hasFast, answered int
	for i := range n {
		g := condGen{rand.New(rand.NewPCG(uint64(i), 42))}
		f, a := checkFastCond(t, g)
		if f {
			hasFast++
		}
		if a {
			answered++
		}
	}
	t.Logf("%d conditions: %d with a fast form, %d answered by it", n, hasFast, answered)
	// About half the random conditions are refused at load time (1 < "a").
	if hasFast < n/3 || answered < hasFast/4 || answered == hasFast {
		t.Fatalf("coverage too thin: %d of %d with a fast form, %d answered", hasFast, n, answered)
	}
}

func FuzzFastCond(f *testing.F) {
	for i := range 8 {
		f.Add(uint64(i), uint64(i*7919))
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkFastCond(t, condGen{rand.New(rand.NewPCG(a, b))})
	})
}

// TestFastCondCoversCommonShapes pins which conditions run without the VM:
// losing the fast form of these would quietly cost throughput.
func TestFastCondCoversCommonShapes(t *testing.T) {
	for _, tc := range []struct {
		src  string
		fast bool
	}{
		{`user.country == "USA" && user.emails_enabled`, true},
		{`user.score > 1000 || user.country == "Atlantis-1"`, true},
		{`user.id % 2 == 1`, true},
		{`data.plan in ["pro", "team"]`, true},
		{`not (user.age >= 18.5) and user.tags != nil`, true},
		{`len(user.tags) > 0`, false},
		{`user.email matches "@example\\.com$"`, false},
		{`user.name startsWith "A"`, false},
		{`(user.score ?? 0) > 3`, false},
	} {
		prog, err := (&conditions{ids: map[ref]int{}}).compile(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if got := compileFast(prog) != nil; got != tc.fast {
			t.Errorf("%s: fast form %v, want %v", tc.src, got, tc.fast)
		}
	}
}
