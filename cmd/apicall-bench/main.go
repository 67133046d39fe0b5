// Command apicall-bench is apicall's end-to-end benchmark (issue 8).
//
// In one process tree and one invocation it starts an in-memory kfake
// broker, fills a topic with user events, starts local receivers, and runs
// two systems over the same backlog, each as a child process: apicall itself
// (`apicall run` with the example rules plus 50 rules that never fire) and a
// bare sarama-to-HTTP loop, the baseline (`apicall-bench baseline`). For
// every run it checks that each expected call arrived and that the group
// committed every offset, and reports events/s, CPU per 10k events, peak
// RSS, event-to-call latency percentiles, duplicates and connections, and
// apicall/baseline ratios; bench/results.json gets the same. docs/benchmark.md
// explains the columns.
//
//	go run ./cmd/apicall-bench [--events N] [--latency 0ms,20ms] [--partitions 6] ...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runArgs(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

func runArgs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "baseline" {
		o, err := parseBaseline(args[1:], stderr)
		if err != nil {
			return 2
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := runBaseline(ctx, o, log); err != nil {
			fmt.Fprintln(stderr, "baseline:", err)
			return 1
		}
		return 0
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "apicall-bench:", err)
		return 2
	}
	ok, err := bench(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "apicall-bench:", err)
		return 1
	}
	if !ok {
		fmt.Fprintln(stderr, "apicall-bench: correctness check failed (see PROBLEM lines)")
		return 1
	}
	return 0
}

// options are the benchmark's flags.
type options struct {
	events      int
	latencies   []time.Duration
	partitions  []int
	hosts       int
	rate        float64 // paced runs only, at this rate; 0: backlog runs
	rateHalf    bool    // backlog runs, then paced runs at half their rate
	systems     []string
	maxInFlight int
	maxPerHost  int
	workers     int
	rules       string
	out         string
	apicallBin  string
	timeout     time.Duration
	profile     time.Duration
	settle      time.Duration
	keep        bool
	compression string
	receiver    string
	apicallEnv  []string
	args        []string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("apicall-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int("events", 200000, "events per run")
	latency := fs.String("latency", "0ms,20ms", "receiver latencies to run, comma separated")
	partitions := fs.String("partitions", "6", "partition counts to run, comma separated (1 shows concurrency inside a partition)")
	receiver := fs.String("receiver", receiverFast, "the receivers' HTTP server: fasthttp (less CPU taken from the system measured) or net/http")
	hosts := fs.Int("hosts", 1, "receiver hosts (127.0.0.1, different ports); calls are spread by user id % hosts")
	rate := fs.String("rate", "", `"" fills a backlog before each run; N paces N events/s while the system runs; "half" runs the backlog, then a paced run at half the rate it reached`)
	only := fs.String("only", "", "run only apicall or baseline")
	maxInFlight := fs.Int("max-in-flight", 0, "apicall's dispatch.max_in_flight (0: apicall's default)")
	maxPerHost := fs.Int("max-in-flight-per-host", 0, "apicall's dispatch.max_in_flight_per_host (0: apicall's default)")
	workers := fs.Int("workers", 64, "the baseline's concurrent calls")
	rules := fs.String("rules", "config/example.yaml", "config file whose rules apicall runs (URLs are pointed at the receivers)")
	out := fs.String("out", filepath.Join("bench", "results.json"), "where to write the JSON results (profiles go beside it)")
	bin := fs.String("apicall-bin", "", "a prebuilt apicall binary (default: go build ./cmd/apicall into the work dir)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on a run after this long")
	profile := fs.Duration("profile", 0, "fetch a CPU profile of this length and a heap profile from apicall's admin endpoint (needs APICALL_PPROF support)")
	compression := fs.String("compression", "none", "producer batch compression: none, snappy, lz4, zstd or gzip (consumers hold fetched batches decompressed)")
	apicallEnv := fs.String("apicall-env", "", "extra environment for the apicall child, comma separated KEY=VALUE (e.g. GOMEMLIMIT=120MiB,GOGC=50)")
	settle := fs.Duration("settle", time.Second, "paced runs: how long to wait after the group turns stable before producing (sarama members start fetching some 100-300 ms after that; 0 measures the start-up too)")
	keep := fs.Bool("keep", false, "keep the work dir (generated configs, child logs)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: apicall-bench [flags]   (or: apicall-bench baseline --brokers ... --urls ...)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := options{
		receiver: *receiver, events: *events, hosts: *hosts, maxInFlight: *maxInFlight, maxPerHost: *maxPerHost, workers: *workers, rules: *rules,
		out: *out, apicallBin: *bin, timeout: *timeout, profile: *profile, settle: *settle, keep: *keep, compression: *compression, apicallEnv: splitList(*apicallEnv), args: args,
	}
	if o.receiver != receiverFast && o.receiver != receiverNetHTTP {
		return o, fmt.Errorf("--receiver %q: want %s or %s", o.receiver, receiverFast, receiverNetHTTP)
	}
	if o.events < 1 || o.hosts < 1 || o.workers < 1 || o.maxInFlight < 0 || o.maxPerHost < 0 {
		return o, errors.New("--events, --hosts and --workers must be >= 1, --max-in-flight and --max-in-flight-per-host >= 0")
	}
	for _, s := range splitList(*latency) {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return o, fmt.Errorf("--latency %q: want durations like 0ms,20ms", *latency)
		}
		o.latencies = append(o.latencies, d)
	}
	for _, s := range splitList(*partitions) {
		p, err := strconv.Atoi(s)
		if err != nil || p < 1 {
			return o, fmt.Errorf("--partitions %q: want counts like 6 or 6,1", *partitions)
		}
		o.partitions = append(o.partitions, p)
	}
	if len(o.latencies) == 0 || len(o.partitions) == 0 {
		return o, errors.New("--latency and --partitions need at least one value")
	}
	for _, kv := range o.apicallEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("--apicall-env %q: want KEY=VALUE items", kv)
		}
	}
	if _, ok := compressions[o.compression]; !ok {
		return o, fmt.Errorf("--compression %q: want none, snappy, lz4, zstd or gzip", o.compression)
	}
	switch r := strings.TrimSpace(*rate); r {
	case "", "0":
	case "half":
		o.rateHalf = true
	default:
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			return o, fmt.Errorf(`--rate %q: want events/s or "half"`, r)
		}
		o.rate = v
	}
	switch *only {
	case "":
		o.systems = []string{"apicall", "baseline"}
	case "apicall", "baseline":
		o.systems = []string{*only}
	default:
		return o, fmt.Errorf("--only %q: want apicall or baseline", *only)
	}
	return o, nil
}

// bench runs every configuration and reports; ok is false when a run
// failed its correctness check.
func bench(ctx context.Context, o options, stdout, stderr io.Writer) (ok bool, err error) {
	work, err := os.MkdirTemp("", "apicall-bench-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintf(stderr, "work dir %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	if _, err := readRules(o.rules); err != nil {
		return false, err
	}
	env := &runEnv{o: o, work: work, progress: stderr}
	if slices.Contains(o.systems, "apicall") {
		env.apicallBin = o.apicallBin
		if env.apicallBin == "" {
			fmt.Fprintln(stderr, "building ./cmd/apicall")
			if env.apicallBin, err = buildApicall(ctx, work); err != nil {
				return false, err
			}
		}
	}
	if env.self, err = os.Executable(); err != nil {
		return false, err
	}
	rep := &report{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		CPUs: runtime.NumCPU(), LoadAvg: loadAvg(), Args: o.args,
	}
	ok = true
	for _, p := range o.partitions {
		for _, lat := range o.latencies {
			for _, sys := range o.systems {
				s := runSpec{system: sys, latency: lat, partitions: p, hosts: o.hosts, events: o.events, rate: o.rate}
				r := env.runOne(ctx, s)
				rep.Results = append(rep.Results, r)
				ok = ok && r.OK
				if o.rateHalf && r.OK && ctx.Err() == nil {
					s.rate, s.halfRate = r.EventsPerSec/2, true
					r := env.runOne(ctx, s)
					rep.Results = append(rep.Results, r)
					ok = ok && r.OK
				}
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
			}
		}
	}
	rep.Ratios = ratios(rep.Results)
	rep.Targets = targets(rep.Results, rep.Ratios)
	fmt.Fprintln(stdout)
	printTable(stdout, rep)
	if err := writeJSON(o.out, rep); err != nil {
		return false, fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(stdout, "\nresults written to %s (machine: %d CPUs, load average %s at start)\n", o.out, rep.CPUs, rep.LoadAvg)
	return ok, nil
}
