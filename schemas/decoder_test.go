package schemas

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkFixtureEvent asserts ev is the fixture event, whatever carried it.
func checkFixtureEvent(t *testing.T, ev Event) {
	t.Helper()
	fx := fixtureEvent(t)
	if ev.Name != "Register_newsletter" || ev.Timestamp != "2021-02-01T07:27:44Z" {
		t.Errorf("name, timestamp: %q, %q", ev.Name, ev.Timestamp)
	}
	if want := member(t, fx, "user"); !bytes.Equal(compact(t, ev.User), want) {
		t.Errorf("user:\ngot  %s\nwant %s", ev.User, want)
	}
	if want := member(t, fx, "data"); !bytes.Equal(compact(t, ev.Data), want) {
		t.Errorf("data: got %s, want %s", ev.Data, want)
	}
	if !json.Valid(ev.Raw) {
		t.Errorf("raw not valid JSON: %s", ev.Raw)
	}
}

// Round trips for every wire format, through Decode with each format that
// accepts it.
func TestDecodeRoundTripEveryWireFormat(t *testing.T) {
	_, srv := newFakeRegistry(t)
	ctx := context.Background()
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	reg, err := NewRegistry(RegistryOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	line := fixtureEvent(t)

	jsonEnc, err := NewEncoder(ctx, EncoderOptions{Format: FormatJSON, Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	soeEnc, err := NewEncoder(ctx, EncoderOptions{Format: FormatAvro, Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	confEnc, err := NewEncoder(ctx, EncoderOptions{Format: FormatAvro, Topic: "t", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		enc     *Encoder
		formats []Format
		magic   []byte
	}{
		{"json", jsonEnc, []Format{FormatAuto, FormatJSON}, []byte("{")},
		{"single object", soeEnc, []Format{FormatAuto, FormatAvro}, []byte{0xC3, 0x01}},
		{"confluent", confEnc, []Format{FormatAuto, FormatAvro}, []byte{0, 0, 0, 0, 1}},
	}
	for _, tt := range tests {
		value, err := tt.enc.Encode(line)
		if err != nil {
			t.Fatalf("%s: encode: %v", tt.name, err)
		}
		if !bytes.HasPrefix(value, tt.magic) {
			t.Fatalf("%s: value starts % x, want % x", tt.name, value[:5], tt.magic)
		}
		for _, f := range tt.formats {
			t.Run(tt.name+"/"+string(f), func(t *testing.T) {
				ev, err := d.Decode(ctx, "t", f, value)
				if err != nil {
					t.Fatal(err)
				}
				checkFixtureEvent(t, ev)
				if tt.name != "json" && !bytes.Equal(ev.Raw, compact(t, line)) {
					t.Errorf("raw:\ngot  %s\nwant %s", ev.Raw, compact(t, line))
				}
			})
		}
	}
}

// writerSchema is UserEvent as a newer producer might have it: an extra
// top-level field, an extra profile field, and gravatar_url gone.
func evolvedSchema(t *testing.T) string {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal([]byte(userEventAvsc), &s); err != nil {
		t.Fatal(err)
	}
	fields := s["fields"].([]any)
	s["fields"] = append(fields, map[string]any{"name": "source", "type": "string"})
	profile := fields[2].(map[string]any)["type"].([]any)[1].(map[string]any)
	var kept []any
	for _, f := range profile["fields"].([]any) {
		if f.(map[string]any)["name"] != "gravatar_url" {
			kept = append(kept, f)
		}
	}
	profile["fields"] = append(kept, map[string]any{"name": "plan", "type": "string"})
	b, _ := json.Marshal(s)
	return string(b)
}

func TestDecodeSchemaEvolution(t *testing.T) {
	fr, srv := newFakeRegistry(t)
	writer := mustSchema(t, evolvedSchema(t))
	fr.put(42, writer.String(), "")
	line := compact(t, fixtureEvent(t))
	line = bytes.Replace(line, []byte(`"gravatar_url":null,`), nil, 1)
	line = bytes.Replace(line, []byte(`"user_id":"random_id"`), []byte(`"user_id":"random_id","plan":"pro"`), 1)
	line = bytes.Replace(line, []byte(`}}`), []byte(`},"source":"web"}`), 1) // after data
	value, err := EncodeConfluent(42, writer, line)
	if err != nil {
		t.Fatal(err)
	}
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	ev, err := d.Decode(context.Background(), "t", FormatAuto, value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Raw, line) {
		t.Fatalf("raw (writer's fields, writer's order):\ngot  %s\nwant %s", ev.Raw, line)
	}
	if bytes.Contains(ev.User, []byte("gravatar_url")) || !bytes.Contains(ev.User, []byte(`"plan":"pro"`)) {
		t.Fatalf("user: %s", ev.User)
	}
}

func TestDecodeErrors(t *testing.T) {
	fr, srv := newFakeRegistry(t)
	fr.put(7, `{"type":"record","name":"P","fields":[{"name":"x","type":"string"}]}`, "PROTOBUF")
	fr.put(8, `{"type":"record","name":"R","fields":[{"name":"x","type":"nope"}]}`, "")
	fr.put(9, `"string"`, "")
	fr.put(10, `{"type":"map","values":"string"}`, "")
	ctx := context.Background()
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	noRegistry := fastDecoder(t, DecoderOptions{})
	ue := mustSchema(t, userEventAvsc)
	soe, err := EncodeSingleObject(ue, fixtureEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	unknownFP := append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, soe[10:]...)
	stringDatum := []byte{0, 0, 0, 0, 9, 2, 'x'}
	mapDatum := []byte{0, 0, 0, 0, 10, 2, 2, 'u', 2, 'x', 0}

	tests := []struct {
		name   string
		d      *Decoder
		format Format
		value  []byte
		reason string
	}{
		{"empty auto", d, FormatAuto, nil, ReasonUnknownFormat},
		{"empty json", d, FormatJSON, []byte{}, ReasonNotJSON},
		{"empty avro", d, FormatAvro, []byte{}, ReasonInvalidAvro},
		{"garbage auto", d, FormatAuto, []byte("\x01\x02garbage"), ReasonUnknownFormat},
		{"0xC3 without 0x01", d, FormatAuto, []byte{0xC3, 0x02}, ReasonUnknownFormat},
		{"json array auto", d, FormatAuto, []byte(`[1,2]`), ReasonNotObject},
		{"json garbage auto", d, FormatAuto, []byte(`{"event"`), ReasonNotJSON},
		{"json under avro", d, FormatAvro, []byte(`{"event":"x"}`), ReasonInvalidAvro},
		{"avro under json", d, FormatJSON, soe, ReasonNotJSON},
		{"bad format", d, Format("xml"), []byte(`{}`), ReasonUnknownFormat},
		{"confluent header short", d, FormatAuto, []byte{0, 0, 1}, ReasonInvalidAvro},
		{"single object header short", d, FormatAuto, []byte{0xC3, 0x01, 1}, ReasonInvalidAvro},
		{"single object truncated", d, FormatAuto, soe[:len(soe)-4], ReasonInvalidAvro},
		{"single object trailing", d, FormatAuto, append(append([]byte(nil), soe...), 1, 2), ReasonInvalidAvro},
		{"single object garbage body", d, FormatAuto, append(append([]byte(nil), soe[:10]...), bytes.Repeat([]byte{0xff}, 40)...), ReasonInvalidAvro},
		{"unknown fingerprint", d, FormatAuto, unknownFP, ReasonUnknownFingerprint},
		{"unknown schema id", d, FormatAuto, []byte{0, 0, 0, 0, 99, 0}, ReasonUnknownSchema},
		{"no registry", noRegistry, FormatAvro, []byte{0, 0, 0, 0, 1, 0}, ReasonUnknownSchema},
		{"protobuf schema", d, FormatAuto, []byte{0, 0, 0, 0, 7, 0}, ReasonUnknownSchema},
		{"uncompilable schema", d, FormatAuto, []byte{0, 0, 0, 0, 8, 0}, ReasonUnknownSchema},
		{"top level not a record", d, FormatAuto, stringDatum, ReasonNotObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.d.Decode(ctx, "t", tt.format, tt.value)
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("reason: got %q (err %v), want %q", got, err, tt.reason)
			}
			if IsTransient(err) {
				t.Fatalf("%v must not be transient", err)
			}
		})
	}

	t.Run("top level map is an object", func(t *testing.T) {
		ev, err := d.Decode(ctx, "t", FormatAuto, mapDatum)
		if err != nil || ev.Name != "t" || string(ev.Raw) != `{"u":"x"}` {
			t.Fatalf("got %+v, %v", ev, err)
		}
	})
}

func TestRegistryUnavailable(t *testing.T) {
	ctx := context.Background()
	value := []byte{0, 0, 0, 0, 1, 0, 0, 0, 0} // id 1, four null members

	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(nil)
		url := srv.URL
		srv.Close()
		d := fastDecoder(t, DecoderOptions{RegistryURL: url})
		_, err := d.Decode(ctx, "t", FormatAuto, value)
		if ReasonOf(err) != ReasonRegistryUnavailable || !IsTransient(err) {
			t.Fatalf("got %v, want transient registry_unavailable", err)
		}
	})

	t.Run("503 retried, then recovers", func(t *testing.T) {
		fr, srv := newFakeRegistry(t)
		fr.put(1, userEventAvsc, "")
		fr.set(func(fr *fakeRegistry) { fr.failing = true })
		d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
		body, err := mustSchema(t, userEventAvsc).AppendAvro(nil, []byte(`{"event":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		value := append([]byte{0, 0, 0, 0, 1}, body...)
		_, err = d.Decode(ctx, "t", FormatAuto, value)
		if !IsTransient(err) {
			t.Fatalf("got %v, want transient", err)
		}
		if n := fr.requestCount(); n != 3 {
			t.Fatalf("registry saw %d requests, want 3 (quick retries)", n)
		}
		// transient failures are not cached: the next value tries again
		fr.set(func(fr *fakeRegistry) { fr.failing = false })
		ev, err := d.Decode(ctx, "t", FormatAuto, value)
		if err != nil || ev.Name != "x" {
			t.Fatalf("after recovery: %+v, %v", ev, err)
		}
	})

	t.Run("auth failure", func(t *testing.T) {
		fr, srv := newFakeRegistry(t)
		fr.put(1, userEventAvsc, "")
		fr.set(func(fr *fakeRegistry) { fr.user, fr.pass = "apicall", "s3cret" })
		bad := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL, RegistryUsername: "apicall", RegistryPassword: "wrong"})
		if _, err := bad.Decode(ctx, "t", FormatAuto, value); !IsTransient(err) {
			t.Fatalf("wrong password: got %v, want transient (fix credentials, nothing lost)", err)
		}
		good := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL, RegistryUsername: "apicall", RegistryPassword: "s3cret"})
		if _, err := good.Decode(ctx, "t", FormatAuto, value); err != nil {
			t.Fatal(err)
		}
		inURL := fastDecoder(t, DecoderOptions{RegistryURL: strings.Replace(srv.URL, "://", "://apicall:s3cret@", 1)})
		if _, err := inURL.Decode(ctx, "t", FormatAuto, value); err != nil {
			t.Fatal(err)
		}
		_, err := bad.Decode(ctx, "t", FormatAuto, value)
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("password in error: %v", err)
		}
	})

	t.Run("context canceled", func(t *testing.T) {
		fr, srv := newFakeRegistry(t)
		fr.put(1, userEventAvsc, "")
		d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := d.Decode(cctx, "t", FormatAuto, value); !IsTransient(err) {
			t.Fatalf("got %v, want transient", err)
		}
	})
}

// A burst of values with a new schema id costs one registry call.
func TestRegistryFetchedOncePerID(t *testing.T) {
	fr, srv := newFakeRegistry(t)
	fr.put(5, userEventAvsc, "")
	gate := make(chan struct{})
	arrived := make(chan struct{}, 1)
	fr.set(func(fr *fakeRegistry) { fr.gate, fr.arrived = gate, arrived })
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	value, err := EncodeConfluent(5, mustSchema(t, userEventAvsc), fixtureEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			_, err := d.Decode(context.Background(), "t", FormatAuto, value)
			errs <- err
		})
	}
	// Let the one fetch through once it has reached the registry; decodes
	// started meanwhile wait for it, later ones hit the cache.
	<-arrived
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fr.getsFor(5); n != 1 {
		t.Fatalf("registry asked %d times, want 1", n)
	}
}

func TestRegistryUnknownIDCachedBriefly(t *testing.T) {
	fr, srv := newFakeRegistry(t)
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	now := time.Date(2021, 2, 1, 7, 27, 44, 0, time.UTC)
	d.now = func() time.Time { return now }
	value := []byte{0, 0, 0, 0, 77, 0, 0, 0, 0}
	for range 3 {
		if _, err := d.Decode(context.Background(), "t", FormatAuto, value); ReasonOf(err) != ReasonUnknownSchema {
			t.Fatalf("got %v", err)
		}
	}
	if n := fr.getsFor(77); n != 1 {
		t.Fatalf("registry asked %d times within the TTL, want 1", n)
	}
	now = now.Add(negativeTTL)
	fr.put(77, userEventAvsc, "") // registered since (a lagging replica caught up)
	if _, err := d.Decode(context.Background(), "t", FormatAuto, value); err != nil {
		t.Fatalf("after the TTL: %v", err)
	}
	if n := fr.getsFor(77); n != 2 {
		t.Fatalf("registry asked %d times, want 2", n)
	}
}

func TestRegistryCAFile(t *testing.T) {
	fr, h := newFakeRegistryHandler()
	fr.put(1, userEventAvsc, "")
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	value := []byte{0, 0, 0, 0, 1, 0}
	untrusted := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	if _, err := untrusted.Decode(ctx, "t", FormatAuto, value); !IsTransient(err) {
		t.Fatalf("without the CA: got %v, want transient TLS failure", err)
	}
	body, err := mustSchema(t, userEventAvsc).AppendAvro(nil, []byte(`{"event":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	trusted := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL, RegistryCAFile: ca})
	if ev, err := trusted.Decode(ctx, "t", FormatAuto, append(value[:5:5], body...)); err != nil || ev.Name != "x" {
		t.Fatalf("with the CA: %+v, %v", ev, err)
	}
}

func TestNewDecoderOptions(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "all.avsc")
	if err := os.WriteFile(good, []byte(allTypes), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.avsc")
	if err := os.WriteFile(bad, []byte(`{"type":"record"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder(DecoderOptions{AvscFiles: []string{good}})
	if err != nil {
		t.Fatal(err)
	}
	s := mustSchema(t, allTypes)
	value, err := EncodeSingleObject(s, []byte(allTypesValue))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := d.Decode(context.Background(), "all", FormatAvro, value)
	if err != nil || ev.Name != "all" || !bytes.Equal(ev.Raw, compact(t, []byte(allTypesValue))) {
		t.Fatalf("configured avsc: %s, %v", ev.Raw, err)
	}

	for name, opts := range map[string]DecoderOptions{
		"bad avsc":     {AvscFiles: []string{bad}},
		"missing avsc": {AvscFiles: []string{filepath.Join(dir, "nope.avsc")}},
		"bad url":      {RegistryURL: "registry:8081"},
		"missing CA":   {RegistryURL: "https://r", RegistryCAFile: filepath.Join(dir, "nope.pem")},
		"CA not PEM":   {RegistryURL: "https://r", RegistryCAFile: bad},
	} {
		if _, err := NewDecoder(opts); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestRegisterSchema(t *testing.T) {
	_, srv := newFakeRegistry(t)
	reg, err := NewRegistry(RegistryOptions{URL: srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id1, err := reg.RegisterSchema(ctx, "events-value", userEventAvsc)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := reg.RegisterSchema(ctx, "events-value", userEventAvsc)
	if err != nil || id2 != id1 {
		t.Fatalf("registering twice: %d, %d, %v", id1, id2, err)
	}
	rs, err := reg.SchemaByID(ctx, id1)
	if err != nil || rs.Schema != userEventAvsc {
		t.Fatalf("SchemaByID: %v", err)
	}
	if _, err := reg.SchemaByID(ctx, 999); !errors.Is(err, ErrSchemaNotFound) {
		t.Fatalf("SchemaByID(999): %v, want ErrSchemaNotFound", err)
	}
	if _, err := reg.RegisterSchema(ctx, "a/b c", ""); err == nil {
		t.Fatal("empty schema: want the registry's 422")
	}
}

func TestEncoderJSONChecksLine(t *testing.T) {
	enc, err := NewEncoder(context.Background(), EncoderOptions{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Encode([]byte(`[1]`)); ReasonOf(err) != ReasonNotObject {
		t.Fatalf("got %v", err)
	}
	if _, err := NewEncoder(context.Background(), EncoderOptions{Format: "xml"}); err == nil {
		t.Fatal("want an error for format xml")
	}
}

// The decoder owns no goroutines; after Close, its HTTP client holds no
// idle connections either (the consumer's goleak checks rely on this).
func TestDecoderCloseLeavesNoConnections(t *testing.T) {
	fr, h := newFakeRegistryHandler()
	fr.put(1, userEventAvsc, "")
	srv := httptest.NewUnstartedServer(h)
	closed := make(chan struct{}, 1)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	defer srv.Close()
	d := fastDecoder(t, DecoderOptions{RegistryURL: srv.URL})
	if _, err := d.Decode(context.Background(), "t", FormatAuto, []byte{0, 0, 0, 0, 1, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	select {
	case <-closed: // the client hung up its keep-alive connection
	case <-time.After(10 * time.Second):
		t.Fatal("the registry connection stayed open after Close")
	}
}

// Without ValuesImmutable a JSON event owns a copy of the value (the caller
// may reuse its buffer); with it, the event points into the value.
func TestDecoderValuesImmutable(t *testing.T) {
	for _, immutable := range []bool{false, true} {
		value := compact(t, fixtureEvent(t))
		d, err := NewDecoder(DecoderOptions{ValuesImmutable: immutable})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := d.Decode(context.Background(), "t", FormatJSON, value)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Raw, value) {
			t.Fatalf("raw %s", ev.Raw)
		}
		if aliased := &ev.Raw[0] == &value[0]; aliased != immutable {
			t.Errorf("ValuesImmutable %v: Raw aliases the value: %v", immutable, aliased)
		}
	}
}
