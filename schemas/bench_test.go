package schemas

import (
	"context"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// The hot path: one fixture event (the documented profile) per iteration.

func BenchmarkDecodeJSON(b *testing.B) {
	value := compact(b, fixtureEvent(b))
	d := fastDecoder(b, DecoderOptions{})
	ctx := context.Background()
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(ctx, "t", FormatAuto, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAvro decodes the fixture in the single-object encoding
// (the Confluent path differs only by a cache lookup, measured below).
func BenchmarkDecodeAvro(b *testing.B) {
	ue := mustSchema(b, userEventAvsc)
	value, err := EncodeSingleObject(ue, fixtureEvent(b))
	if err != nil {
		b.Fatal(err)
	}
	d := fastDecoder(b, DecoderOptions{})
	ctx := context.Background()
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(ctx, "t", FormatAuto, value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeConfluentCached(b *testing.B) {
	fr, srv := newFakeRegistry(b)
	fr.put(1, userEventAvsc, "")
	value, err := EncodeConfluent(1, mustSchema(b, userEventAvsc), fixtureEvent(b))
	if err != nil {
		b.Fatal(err)
	}
	d := fastDecoder(b, DecoderOptions{RegistryURL: srv.URL})
	ctx := context.Background()
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(ctx, "t", FormatAuto, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoavroNativeFromBinary is the road not taken: goavro's decode to
// native maps alone, before any ordering or JSON (kept to justify the
// direct decoder; see Schema's doc).
func BenchmarkGoavroNativeFromBinary(b *testing.B) {
	ue := mustSchema(b, userEventAvsc)
	body, err := ue.AppendAvro(nil, fixtureEvent(b))
	if err != nil {
		b.Fatal(err)
	}
	codec, err := goavro.NewCodec(userEventAvsc)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := codec.NativeFromBinary(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSingleObject(b *testing.B) {
	ue := mustSchema(b, userEventAvsc)
	line := fixtureEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeSingleObject(ue, line); err != nil {
			b.Fatal(err)
		}
	}
}
