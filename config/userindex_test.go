package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/apicall/apicall/schemas"
)

// checkUserLookup compares a lookup of keys below user through the
// decoder's index with gjson's scan of the whole profile, which is what
// lookups did before the index (and still do without one).
func checkUserLookup(t *testing.T, user string, keys []string) {
	t.Helper()
	raw := `{"event":"E","user":` + user + `}`
	ev, err := schemas.DecodeJSON("t", []byte(raw))
	if err != nil {
		return // not an event: nothing is looked up in it
	}
	r := ref{src: srcUser}
	for _, k := range keys {
		r = r.child(k)
	}
	if r.src != srcUser || r.path == "" {
		return
	}
	got := r.result(&ev)
	want := gjson.Get(string(ev.User), r.path)
	if got.Type != want.Type || got.Raw != want.Raw || got.Str != want.Str ||
		got.Num != want.Num && got.Num == got.Num || got.Exists() != want.Exists() {
		t.Fatalf("user %s, path %q:\nindexed %#v\ngjson   %#v", user, r.path, got, want)
	}
}

func TestUserIndexLookups(t *testing.T) {
	many := make([]string, 70)
	for i := range many {
		many[i] = fmt.Sprintf(`"k%d": %d`, i, i)
	}
	users := []string{
		`{"country": "USA", "email": "a@b.c", "n": 1.5, "ok": true, "none": null}`,
		`{"a": {"b": {"c": [1, {"d": "x"}]}}, "list": [10, 20, {"k": "v"}], "s": "str"}`,
		`{"dup": 1, "dup": 2, "obj": {"x": 1}, "obj": {"y": 2}}`,
		`{"e\u0073caped": 1, "plain": 2}`,
		`{"a.b": 1, "a": {"b": 2}, "*": 3, "#": 4, "@this": 5, "": 6, "spa ce": 7, "ünï": 8}`,
		`{}`,
		`{ "ws" :  "x" ,  "t" : [ ] }`,
		`{` + strings.Join(many, ", ") + `}`,
		`{"str": "a \"quoted\" \\ value", "u": "\u00e9"}`,
	}
	paths := [][]string{
		{"country"}, {"email"}, {"n"}, {"ok"}, {"none"}, {"missing"}, {"a", "b", "c", "1", "d"},
		{"list", "2", "k"}, {"list", "0"}, {"list", "#"}, {"s", "x"}, {"dup"}, {"obj", "x"}, {"obj", "y"},
		{"escaped"}, {"plain"}, {"a.b"}, {"a", "b"}, {"*"}, {"#"}, {"@this"}, {"spa ce"}, {"ünï"},
		{"ws"}, {"t"}, {"k0"}, {"k69"}, {"str"}, {"u"},
	}
	for _, u := range users {
		for _, p := range paths {
			checkUserLookup(t, u, p)
		}
	}

	// The common profile is indexed: the lookups above went through it.
	ev, err := schemas.DecodeJSON("t", []byte(`{"user":`+users[0]+`}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, found, indexed := ev.UserMember("email", 0); !indexed || !found || string(v) != `"a@b.c"` {
		t.Fatalf("UserMember(email) = %s, %v, %v; want the value from the index", v, found, indexed)
	}
	// A User replaced after decoding is never read through the old index.
	ev.User = []byte(`{"email": "other"}`)
	if _, _, indexed := ev.UserMember("email", 0); indexed {
		t.Fatal("the index of the decoded profile answered for another one")
	}
}

func FuzzUserIndex(f *testing.F) {
	f.Add(`{"country": "USA", "tags": [{"name": "a"}]}`, "tags.0.name")
	f.Add(`{"a": 1, "a": {"b": 2}}`, "a.b")
	f.Add(`{"k\u0065y": 1}`, "key")
	f.Add(`{"x": [1, 2, 3]}`, "x.#")
	f.Fuzz(func(t *testing.T, user, keys string) {
		checkUserLookup(t, user, strings.Split(keys, "."))
	})
}
