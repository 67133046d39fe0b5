package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one run: one system, one receiver latency, one partition count,
// backlog or paced.
type result struct {
	System     string  `json:"system"`
	Mode       string  `json:"mode"`           // "backlog" or "paced"
	Rate       float64 `json:"rate,omitempty"` // paced: target events/s
	HalfRate   bool    `json:"half_rate,omitempty"`
	LatencyMS  float64 `json:"receiver_latency_ms"`
	Partitions int     `json:"partitions"`
	Hosts      int     `json:"hosts"`
	Events     int     `json:"events"`
	// ExpectedCalls is what the rules produce for the events (the
	// baseline makes one call per event); Calls is how many distinct
	// Idempotency-Keys the receivers saw.
	ExpectedCalls int   `json:"expected_calls"`
	Calls         int64 `json:"calls"`
	// EventsPerSec is Events over ProcessSeconds.
	EventsPerSec float64 `json:"events_per_sec"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUPer10k    float64 `json:"cpu_seconds_per_10k_events"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	Duplicates   int64   `json:"duplicates"`
	Connections  int64   `json:"connections"`
	// PerHostCap is apicall's effective dispatch.max_in_flight_per_host.
	PerHostCap int `json:"per_host_cap,omitempty"`
	// Phases: producing the backlog; child start to first call; first
	// call to the last first-time call (the throughput window); last call
	// to every offset committed.
	ProduceSeconds float64 `json:"produce_seconds"`
	StartupSeconds float64 `json:"startup_seconds"`
	ProcessSeconds float64 `json:"process_seconds"`
	CommitSeconds  float64 `json:"commit_seconds"`
	// HarnessCPUSeconds is the harness process's CPU (broker, receivers,
	// producer) over the same window as CPUSeconds: it competes for the
	// same cores.
	HarnessCPUSeconds float64  `json:"harness_cpu_seconds"`
	OK                bool     `json:"ok"`
	Problems          []string `json:"problems,omitempty"`
	Profiles          []string `json:"profiles,omitempty"`
}

func (r *result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// ratio compares apicall with the baseline for one configuration.
type ratio struct {
	LatencyMS    float64 `json:"receiver_latency_ms"`
	Partitions   int     `json:"partitions"`
	Mode         string  `json:"mode"`
	Throughput   float64 `json:"events_per_sec"`             // apicall / baseline
	CPUPer10k    float64 `json:"cpu_seconds_per_10k_events"` // apicall / baseline
	PeakRSS      float64 `json:"peak_rss"`                   // apicall / baseline
	ApicallRate  float64 `json:"apicall_events_per_sec"`
	BaselineRate float64 `json:"baseline_events_per_sec"`
}

// target is one of issue 8's goals, judged on what was measured.
type target struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "met", "missed" or "not measured"
	Detail string `json:"detail"`
}

// report is bench/results.json.
type report struct {
	Started   time.Time `json:"started"`
	GoVersion string    `json:"go_version"`
	OS        string    `json:"os"`
	CPUs      int       `json:"cpus"`
	LoadAvg   string    `json:"loadavg_at_start,omitempty"`
	Args      []string  `json:"args"`
	Results   []result  `json:"results"`
	Ratios    []ratio   `json:"ratios"`
	Targets   []target  `json:"targets"`
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted
// values; 0 for none.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// ratios pairs apicall and baseline results of the same configuration.
func ratios(rs []result) []ratio {
	var out []ratio
	for _, a := range rs {
		if a.System != "apicall" || !a.OK {
			continue
		}
		for _, b := range rs {
			if b.System != "baseline" || !b.OK || b.LatencyMS != a.LatencyMS || b.Partitions != a.Partitions || b.Mode != a.Mode || b.Mode != "backlog" {
				continue
			}
			out = append(out, ratio{
				LatencyMS: a.LatencyMS, Partitions: a.Partitions, Mode: a.Mode,
				Throughput:  div(a.EventsPerSec, b.EventsPerSec),
				CPUPer10k:   div(a.CPUPer10k, b.CPUPer10k),
				PeakRSS:     div(a.PeakRSSMB, b.PeakRSSMB),
				ApicallRate: a.EventsPerSec, BaselineRate: b.EventsPerSec,
			})
		}
	}
	return out
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Issue 8's targets.
const (
	targetRatio0ms   = 0.8
	target20ms1p     = 25000.0
	targetPeakRSSMB  = 150.0
	targetP99HalfMax = 50.0
)

// targets judges issue 8's goals on the results.
func targets(rs []result, rts []ratio) []target {
	var out []target

	t := target{Name: fmt.Sprintf("0 ms receiver: apicall >= %.1fx baseline events/s", targetRatio0ms), Status: "not measured",
		Detail: "needs both systems at --latency 0ms"}
	for _, r := range rts {
		if r.LatencyMS != 0 {
			continue
		}
		d := fmt.Sprintf("%.2fx at %d partitions", r.Throughput, r.Partitions)
		t = judge(t, r.Throughput >= targetRatio0ms, d)
	}
	out = append(out, t)

	t = target{Name: fmt.Sprintf("20 ms receiver, 1 partition: apicall >= %.0f events/s", target20ms1p), Status: "not measured",
		Detail: "needs --partitions 1 --latency 20ms"}
	for _, r := range rs {
		if r.System == "apicall" && r.OK && r.Mode == "backlog" && r.LatencyMS == 20 && r.Partitions == 1 {
			d := fmt.Sprintf("%.0f events/s with %d host(s)", r.EventsPerSec, r.Hosts)
			if bound := perHostBound(r); bound > 0 && bound < target20ms1p {
				d += fmt.Sprintf(" (per-host cap %d bounds %d host(s) at %.0f events/s; --hosts or --max-in-flight-per-host lift it)",
					r.PerHostCap, r.Hosts, bound)
			}
			t = judge(t, r.EventsPerSec >= target20ms1p, d)
		}
	}
	out = append(out, t)

	t = target{Name: fmt.Sprintf("apicall peak RSS <= %.0f MB", targetPeakRSSMB), Status: "not measured", Detail: "needs /proc"}
	for _, r := range rs {
		if r.System == "apicall" && r.PeakRSSMB > 0 {
			t = judge(t, r.PeakRSSMB <= targetPeakRSSMB, fmt.Sprintf("%.0f MB (%s, %gms, p=%d)", r.PeakRSSMB, r.Mode, r.LatencyMS, r.Partitions))
		}
	}
	out = append(out, t)

	t = target{Name: fmt.Sprintf("apicall p99 event-to-call < %.0f ms at half the max rate", targetP99HalfMax), Status: "not measured",
		Detail: "needs --rate half"}
	for _, r := range rs {
		if r.System == "apicall" && r.OK && r.HalfRate {
			t = judge(t, r.P99MS < targetP99HalfMax, fmt.Sprintf("%.1f ms at %.0f/s (%gms, p=%d)", r.P99MS, r.Rate, r.LatencyMS, r.Partitions))
		}
	}
	out = append(out, t)
	return out
}

// perHostBound is the most events/s apicall's per-host cap allows in run r:
// hosts x cap calls at once, each held for at least the receiver's latency,
// at the run's calls per event. 0 when unknown.
func perHostBound(r result) float64 {
	if r.PerHostCap == 0 || r.LatencyMS == 0 || r.Events == 0 || r.ExpectedCalls == 0 {
		return 0
	}
	callsPerEvent := float64(r.ExpectedCalls) / float64(r.Events)
	return float64(r.Hosts*r.PerHostCap) / (r.LatencyMS / 1000) / callsPerEvent
}

// judge folds one measurement into t: missed wins over met.
func judge(t target, ok bool, detail string) target {
	if t.Status == "not measured" {
		t.Status, t.Detail = "met", ""
	}
	if !ok {
		t.Status = "missed"
	}
	if t.Detail != "" {
		t.Detail += "; "
	}
	t.Detail += detail
	return t
}

// printTable writes the results, ratios and targets for people.
func printTable(w io.Writer, rep *report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tmode\tlatency\tpartitions\thosts\tevents\tcalls\tevents/s\tCPU s/10k ev\tpeak RSS MB\tp50 ms\tp99 ms\tdups\tconns\tok\t")
	for _, r := range rep.Results {
		mode := r.Mode
		if r.Mode == "paced" {
			mode = fmt.Sprintf("paced %.0f/s", r.Rate)
		}
		ok := "yes"
		if !r.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%gms\t%d\t%d\t%d\t%d\t%.0f\t%.3f\t%.0f\t%.1f\t%.1f\t%d\t%d\t%s\t\n",
			r.System, mode, r.LatencyMS, r.Partitions, r.Hosts, r.Events, r.Calls, r.EventsPerSec,
			r.CPUPer10k, r.PeakRSSMB, r.P50MS, r.P99MS, r.Duplicates, r.Connections, ok)
	}
	tw.Flush()
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "apicall/baseline\tlatency\tpartitions\tevents/s\tCPU/10k\tpeak RSS\t")
		for _, r := range rep.Ratios {
			fmt.Fprintf(tw, "\t%gms\t%d\t%.2fx\t%.2fx\t%.2fx\t\n", r.LatencyMS, r.Partitions, r.Throughput, r.CPUPer10k, r.PeakRSS)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	for _, t := range rep.Targets {
		fmt.Fprintf(w, "target %-62s %-12s %s\n", t.Name, t.Status, t.Detail)
	}
	for _, r := range rep.Results {
		for _, p := range r.Problems {
			fmt.Fprintf(w, "PROBLEM %s %s %gms p=%d: %s\n", r.System, r.Mode, r.LatencyMS, r.Partitions, p)
		}
	}
}

// writeJSON writes rep to path, creating its directory.
func writeJSON(path string, rep *report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loadAvg is /proc/loadavg's first three fields, "" elsewhere.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
