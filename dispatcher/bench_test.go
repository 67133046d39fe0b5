package dispatcher

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// stubTransport answers every request at once with an empty 200, as a 0 ms
// receiver would, without a network or a server: what is left to measure
// is the dispatcher and http.Client.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, ContentLength: 0, Request: r,
	}, nil
}

// BenchmarkDoOverhead isolates Do's own cost (BenchmarkDo's figures are
// mostly net/http and the in-process server). "contended" runs ~1000
// concurrent calls under one cancelable parent context, as partition
// workers do, to show contention on shared locks and contexts. The stub
// replaces net/http's transport, so this measures the net/http path; the
// fast path's figures are BenchmarkDo's.
func BenchmarkDoOverhead(b *testing.B) {
	d, err := New(Settings{AllowCIDRs: loopback, MaxInFlightPerHost: 4096, DisableFastPath: true}, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	d.client.Transport = stubTransport{}
	req := post("http://127.0.0.2:8080/hook")
	req.Body = make([]byte, 1300)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res := d.Do(context.Background(), req); res.Outcome != Delivered {
				b.Fatalf("%s %s %v", res.Outcome, res.Reason, res.Err)
			}
		}
	})
	b.Run("signed", func(b *testing.B) {
		signed := *req
		signed.SigningSecrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
		b.ReportAllocs()
		for b.Loop() {
			if res := d.Do(context.Background(), &signed); res.Outcome != Delivered {
				b.Fatalf("%s %s %v", res.Outcome, res.Reason, res.Err)
			}
		}
	})
	b.Run("contended", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.ReportAllocs()
		b.SetParallelism(500)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res := d.Do(ctx, req); res.Outcome != Delivered {
					b.Errorf("%s %s %v", res.Outcome, res.Reason, res.Err)
					return
				}
			}
		})
	})
}
