package schemas

import (
	"bytes"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantErr   string // reason; "" = success
		wantName  string
		wantTS    string
		wantUser  string // "" = nil
		wantData  string
		wantRawIn bool // Raw == input
	}{
		{name: "full", in: `{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":{"id":7},"data":{"a":1}}`,
			wantName: "Register_newsletter", wantTS: "2021-02-01T07:27:44Z", wantUser: `{"id":7}`, wantData: `{"a":1}`},
		{name: "no event: topic name", in: `{"user":{"id":7}}`, wantName: "topic", wantUser: `{"id":7}`},
		{name: "event null: topic name", in: `{"event":null}`, wantName: "topic"},
		{name: "event empty: topic name", in: `{"event":""}`, wantName: "topic"},
		{name: "escaped event", in: `{"event":"a\"b\u00e9"}`, wantName: `a"bé`},
		{name: "escaped key", in: `{"ev\u0065nt":"x"}`, wantName: "x"},
		{name: "first duplicate wins", in: `{"event":"first","event":"second"}`, wantName: "first"},
		{name: "whitespace everywhere", in: " \n{ \"event\" : \"x\" ,\t\"user\" : { \"a\" : [ 1 , \"}\" ] } }\n",
			wantName: "x", wantUser: `{ "a" : [ 1 , "}" ] }`},
		{name: "unknown members kept", in: `{"event":"x","source":"web","n":[1,{"b":"}"}]}`, wantName: "x", wantRawIn: true},
		{name: "user null", in: `{"user":null,"data":null}`, wantName: "topic"},
		{name: "empty object", in: `{}`, wantName: "topic"},
		{name: "nested event does not count", in: `{"data":{"event":"inner"}}`, wantName: "topic", wantData: `{"event":"inner"}`},

		{name: "event number", in: `{"event":5}`, wantErr: ReasonInvalidField},
		{name: "event object", in: `{"event":{}}`, wantErr: ReasonInvalidField},
		{name: "timestamp number", in: `{"timestamp":1612164464}`, wantErr: ReasonInvalidField},
		{name: "user string", in: `{"user":"x"}`, wantErr: ReasonInvalidField},
		{name: "user array", in: `{"user":[]}`, wantErr: ReasonInvalidField},
		{name: "data number", in: `{"data":1}`, wantErr: ReasonInvalidField},
		{name: "array", in: `[{"event":"x"}]`, wantErr: ReasonNotObject},
		{name: "string", in: `"x"`, wantErr: ReasonNotObject},
		{name: "number", in: ` 42 `, wantErr: ReasonNotObject},
		{name: "null", in: `null`, wantErr: ReasonNotObject},
		{name: "empty", in: ``, wantErr: ReasonNotJSON},
		{name: "blank", in: "  \n", wantErr: ReasonNotJSON},
		{name: "truncated", in: `{"event":"x"`, wantErr: ReasonNotJSON},
		{name: "two values", in: `{}{}`, wantErr: ReasonNotJSON},
		{name: "trailing comma", in: `{"a":1,}`, wantErr: ReasonNotJSON},
		{name: "garbage", in: "\x00\x01\x02", wantErr: ReasonNotJSON},
		{name: "invalid UTF-8", in: "{\"event\":\"\xff\"}", wantErr: ReasonNotJSON},
		{name: "BOM", in: "\xef\xbb\xbf{}", wantErr: ReasonNotJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeJSON("topic", []byte(tt.in))
			if tt.wantErr != "" {
				if got := ReasonOf(err); got != tt.wantErr {
					t.Fatalf("reason: got %q (err %v), want %q", got, err, tt.wantErr)
				}
				if IsTransient(err) {
					t.Fatal("JSON errors are never transient")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if ev.Name != tt.wantName || ev.Timestamp != tt.wantTS {
				t.Errorf("name, timestamp: got %q, %q; want %q, %q", ev.Name, ev.Timestamp, tt.wantName, tt.wantTS)
			}
			checkMember(t, "user", ev.User, tt.wantUser)
			checkMember(t, "data", ev.Data, tt.wantData)
			if string(ev.Raw) != tt.in {
				t.Errorf("raw: got %s, want the input %s", ev.Raw, tt.in)
			}
		})
	}
}

func checkMember(t *testing.T, name string, got []byte, want string) {
	t.Helper()
	if want == "" {
		if got != nil {
			t.Errorf("%s: got %s, want nil", name, got)
		}
		return
	}
	if string(got) != want {
		t.Errorf("%s: got %s, want %s", name, got, want)
	}
}

// The Kafka client reuses record buffers: nothing in an Event may alias the
// value, and appending to User must not write into Raw.
func TestDecodeJSONOwnsItsBytes(t *testing.T) {
	in := []byte(`{"event":"x","user":{"id":7},"data":{"a":1}}`)
	ev, err := DecodeJSON("t", in)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(ev.Raw)
	for i := range in {
		in[i] = 'X'
	}
	if string(ev.Raw) != raw || string(ev.User) != `{"id":7}` || ev.Name != "x" {
		t.Fatalf("event changed with the input buffer: %+v", ev)
	}
	_ = append(ev.User, "garbage"...)
	if string(ev.Raw) != raw {
		t.Fatalf("append to User overwrote Raw: %s", ev.Raw)
	}
}

func TestDecodeJSONFixture(t *testing.T) {
	in := fixtureEvent(t)
	ev, err := DecodeJSON("t", in)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name != "Register_newsletter" || ev.Timestamp != "2021-02-01T07:27:44Z" {
		t.Fatalf("got %q %q", ev.Name, ev.Timestamp)
	}
	if !bytes.Equal(compact(t, ev.User), member(t, in, "user")) {
		t.Fatalf("user: %s", ev.User)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatAuto, "auto": FormatAuto, "json": FormatJSON, "avro": FormatAvro} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseFormat("protobuf"); err == nil {
		t.Error("ParseFormat(protobuf): want an error")
	}
}
