package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
)

// Receiver is a tiny HTTP endpoint that prints every call it gets, for
// trying rules locally (`apicall receive`). It answers every call with a
// fixed status.
type Receiver struct {
	mu     sync.Mutex // serialises writes so calls do not interleave on w
	w      io.Writer
	status int
	n      int
}

// NewReceiver prints calls to w and answers them with status.
func NewReceiver(w io.Writer, status int) *Receiver {
	return &Receiver{w: w, status: status}
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var out bytes.Buffer
	rc.mu.Lock()
	rc.n++
	fmt.Fprintf(&out, "--- call %d from %s\n%s %s %s\n", rc.n, r.RemoteAddr, r.Method, r.URL.RequestURI(), r.Proto)
	fmt.Fprintf(&out, "Host: %s\n", r.Host)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&out, "%s: %s\n", k, v)
		}
	}
	if len(body) > 0 {
		out.WriteByte('\n')
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") == nil {
			out.Write(pretty.Bytes())
		} else {
			out.Write(body)
		}
		out.WriteByte('\n')
	}
	_, _ = rc.w.Write(out.Bytes())
	rc.mu.Unlock()
	w.WriteHeader(rc.status)
}
