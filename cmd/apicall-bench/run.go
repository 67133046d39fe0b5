package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runEnv is what every run shares.
type runEnv struct {
	o          options
	work       string // configs and child logs
	apicallBin string
	self       string // this binary, run as `baseline`
	progress   io.Writer
}

// runSpec is one run's configuration.
type runSpec struct {
	system     string // "apicall" or "baseline"
	latency    time.Duration
	partitions int
	hosts      int
	events     int
	rate       float64 // events/s produced while the system runs; 0: a backlog first
	halfRate   bool    // rate is half the rate of the backlog run before
}

func (s runSpec) name() string {
	mode := "backlog"
	if s.rate > 0 {
		mode = "paced" + strconv.Itoa(int(s.rate))
	}
	return fmt.Sprintf("%s-%s-p%d-h%d-%s", s.system, s.latency, s.partitions, s.hosts, mode)
}

// runOne runs one configuration on a fresh broker and receivers.
func (e *runEnv) runOne(ctx context.Context, s runSpec) result {
	r := result{
		System: s.system, Mode: "backlog", LatencyMS: ms(int64(s.latency)), Partitions: s.partitions,
		Hosts: s.hosts, Events: s.events,
	}
	if s.rate > 0 {
		r.Mode, r.Rate, r.HalfRate = "paced", s.rate, s.halfRate
	}
	e.logf(s, "start")
	if err := e.run(ctx, s, &r); err != nil {
		r.problem("%v", err)
	}
	r.OK = len(r.Problems) == 0
	e.logf(s, "%.0f events/s, %.3f CPU s/10k events, peak RSS %.0f MB, p50 %.1f ms, p99 %.1f ms, ok=%v",
		r.EventsPerSec, r.CPUPer10k, r.PeakRSSMB, r.P50MS, r.P99MS, r.OK)
	return r
}

func (e *runEnv) logf(s runSpec, format string, args ...any) {
	fmt.Fprintf(e.progress, "%s [%s] %s\n", time.Now().Format("15:04:05"), s.name(), fmt.Sprintf(format, args...))
}

func (e *runEnv) run(ctx context.Context, s runSpec, r *result) error {
	broker, err := startBroker(s.partitions)
	if err != nil {
		return err
	}
	defer broker.Close()
	addr := broker.Addr()
	rcv, err := startReceivers(s.hosts, s.latency, e.o.receiver)
	if err != nil {
		return err
	}
	defer rcv.Close()
	adm, err := newAdmin(addr)
	if err != nil {
		return err
	}
	defer adm.Close()

	var bin, group, adminAddr string
	var args, env []string
	switch s.system {
	case "apicall":
		example, err := readRules(e.o.rules)
		if err != nil {
			return err
		}
		if adminAddr, err = freeAddr(); err != nil {
			return err
		}
		cfgPath := filepath.Join(e.work, s.name()+".yaml")
		cfg, err := writeConfig(cfgPath, addr, adminAddr, e.o.maxInFlight, e.o.maxPerHost, benchRules(example, rcv.urls))
		if err != nil {
			return err
		}
		if r.ExpectedCalls, err = expectedCalls(cfg, s.events); err != nil {
			return err
		}
		r.PerHostCap = cfg.Dispatch.MaxInFlightPerHost
		bin, group = e.apicallBin, apicallGroup
		args = []string{"run", "--config", cfgPath, "--log-format", "text", "--log-level", "warn"}
		env = append(env, e.o.apicallEnv...)
		if e.o.profile > 0 {
			env = append(env, "APICALL_PPROF=1")
		}
	case "baseline":
		r.ExpectedCalls = s.events
		bin, group = e.self, baselineGroup
		args = []string{"baseline", "--brokers", addr, "--topic", benchTopic, "--group", group,
			"--urls", strings.Join(rcv.urls, ","), "--workers", strconv.Itoa(e.o.workers)}
	default:
		return fmt.Errorf("unknown system %q", s.system)
	}

	linger := 5 * time.Millisecond // backlog: batch
	if s.rate > 0 {
		linger = 0 // paced: every record as soon as it is due
	}
	prod, err := newProducer(addr, benchTopic, linger, e.o.compression)
	if err != nil {
		return err
	}
	defer prod.Close()
	if s.rate == 0 {
		t0 := time.Now()
		if err := prod.backlog(ctx, s.events); err != nil {
			return fmt.Errorf("produce backlog: %w", err)
		}
		r.ProduceSeconds = time.Since(t0).Seconds()
		e.logf(s, "produced %d events in %.1fs", s.events, r.ProduceSeconds)
	}

	harness0, _ := procUsage(os.Getpid())
	start := time.Now()
	ch, err := startChild(bin, args, env, filepath.Join(e.work, s.name()+".log"))
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = ch.stop(10 * time.Second)
		}
	}()

	prodErr := make(chan error, 1) // the paced producer's one result
	if s.rate > 0 {
		if err := waitStable(ctx, adm, group, ch, e.o.timeout); err != nil {
			return err
		}
		// Stable is the broker's view; each member still fetches its
		// offsets and starts its partition consumers after that. Waiting
		// a little keeps that start-up out of the steady-state latency
		// the paced run measures (both systems get the same wait).
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.o.settle):
		}
		e.logf(s, "group stable; producing %d events at %.0f/s", s.events, s.rate)
		go func() { prodErr <- prod.paced(ctx, s.events, s.rate) }() // ends with ctx or when all are produced
	}

	t := rcv.tally
	var prof *profiler
	if e.o.profile > 0 && s.system == "apicall" {
		prof = &profiler{base: "http://" + adminAddr, dir: filepath.Dir(e.o.out), name: s.name(), d: e.o.profile}
	}
	deadline := time.NewTimer(e.o.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lag int64 = -1
wait:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch.exited:
			return fmt.Errorf("%s exited early (%v); last lines:\n%s", s.system, ch.waitErr, ch.logTail(20))
		case <-deadline.C:
			msg := fmt.Sprintf("timed out after %s: %d of %d calls received", e.o.timeout, t.distinct.Load(), r.ExpectedCalls)
			if lag >= 0 {
				msg += fmt.Sprintf(", %d records not committed", lag)
			}
			return errors.New(msg)
		case err := <-prodErr:
			if err != nil {
				return fmt.Errorf("paced produce: %w", err)
			}
		case <-tick.C:
		}
		if prof != nil && t.firstNS.Load() != 0 {
			prof.startCPU()
			if t.distinct.Load() >= int64(r.ExpectedCalls)/2 {
				prof.startHeap()
			}
		}
		if t.distinct.Load() < int64(r.ExpectedCalls) {
			continue
		}
		l, _, ends, err := adm.lagging(ctx, group, benchTopic)
		if err != nil {
			continue // transient; the deadline bounds it
		}
		lag = l
		if lag == 0 && total(ends) == int64(s.events) {
			break wait
		}
	}
	done := time.Now()
	u, uerr := procUsage(ch.pid())
	harness1, _ := procUsage(os.Getpid())
	if prof != nil {
		r.Profiles = prof.finish(ctx)
		for _, p := range prof.problems {
			e.logf(s, "profile: %s", p)
		}
	}
	stopped = true
	if err := ch.stop(60 * time.Second); err != nil {
		r.problem("stop %s: %v; last lines:\n%s", s.system, err, ch.logTail(20))
	}
	if uerr != nil {
		u = ch.exitUsage()
	}

	first, last := t.firstNS.Load(), t.lastNew.Load()
	r.Calls = t.distinct.Load()
	r.Duplicates = t.dups.Load()
	r.Connections = t.conns.Load()
	r.StartupSeconds = time.Unix(0, first).Sub(start).Seconds()
	r.ProcessSeconds = float64(last-first) / 1e9
	r.CommitSeconds = done.Sub(time.Unix(0, last)).Seconds()
	r.EventsPerSec = div(float64(s.events), r.ProcessSeconds)
	r.CPUSeconds = u.cpu.Seconds()
	r.CPUPer10k = r.CPUSeconds / float64(s.events) * 1e4
	r.PeakRSSMB = float64(u.peakKB) / 1024
	r.HarnessCPUSeconds = (harness1.cpu - harness0.cpu).Seconds()
	lats := t.latencies()
	r.P50MS, r.P99MS, r.MaxMS = ms(percentile(lats, 0.50)), ms(percentile(lats, 0.99)), ms(percentile(lats, 1))

	// Correctness: exactly the expected calls, all with a key and a send
	// time, every offset committed (checked above), and for apicall one
	// outcome record per call and nothing parked or dead-lettered.
	if r.Calls != int64(r.ExpectedCalls) {
		r.problem("%d distinct calls, want %d", r.Calls, r.ExpectedCalls)
	}
	if n := t.noKey.Load(); n > 0 {
		r.problem("%d calls without Idempotency-Key", n)
	}
	if n := t.noSent.Load(); n > 0 {
		r.problem("%d calls without a send time (latency not measured for them)", n)
	}
	if s.system == "apicall" {
		for topic, want := range map[string]int64{"apicall.outcomes": int64(r.ExpectedCalls), "apicall.retry": 0, "apicall.dead-letter": 0} {
			ends, err := adm.endOffsets(ctx, topic)
			if err != nil {
				r.problem("read %s: %v", topic, err)
			} else if got := total(ends); got != want {
				r.problem("%s holds %d records, want %d", topic, got, want)
			}
		}
	}
	return nil
}

// waitStable waits until the group has joined, so paced events are not
// measured waiting for a consumer that is still starting.
func waitStable(ctx context.Context, adm *admin, group string, ch *child, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := adm.groupStable(ctx, group)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s not stable after %s", group, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch.exited:
			return fmt.Errorf("exited before joining (%v); last lines:\n%s", ch.waitErr, ch.logTail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// profiler fetches pprof profiles from apicall's admin endpoint, which
// serves net/http/pprof when apicall runs with APICALL_PPROF=1: a CPU
// profile from the first call on, and a heap profile half way through the
// calls (steady state: in use is what is live mid-run, alloc_* counts
// everything allocated since start).
type profiler struct {
	base, dir, name string
	d               time.Duration
	cpu, heap       chan fetched // each profile's one result
	problems        []string
}

// fetched is a profile written to file, or why not.
type fetched struct {
	file string
	err  error
}

// startCPU starts the CPU profile once.
func (p *profiler) startCPU() {
	if p.cpu != nil {
		return
	}
	p.cpu = make(chan fetched, 1)
	go func() { // ends when the profile is written (after p.d) or fails
		p.cpu <- p.fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(p.d.Seconds()))), "cpu")
	}()
}

// startHeap takes the heap profile once.
func (p *profiler) startHeap() {
	if p.heap != nil {
		return
	}
	p.heap = make(chan fetched, 1)
	go func() { p.heap <- p.fetch("/debug/pprof/heap", "heap") }() // ends when written or failed
}

// finish waits for the profiles and returns the files written.
func (p *profiler) finish(ctx context.Context) []string {
	p.startHeap() // a run too short to reach half way
	var files []string
	for _, c := range []chan fetched{p.heap, p.cpu} {
		if c == nil {
			continue
		}
		select {
		case f := <-c:
			if f.err != nil {
				p.problems = append(p.problems, f.err.Error())
			} else {
				files = append(files, f.file)
			}
		case <-ctx.Done():
		}
	}
	return files
}

func (p *profiler) fetch(path, kind string) fetched {
	f := filepath.Join(p.dir, p.name+"."+kind+".prof")
	return fetched{f, p.save(path, kind, f)}
}

func (p *profiler) save(path, kind, f string) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusNotFound {
			return errors.New(kind + " profile: apicall does not serve /debug/pprof (no APICALL_PPROF support in this build)")
		}
		return fmt.Errorf("%s profile: %s", kind, resp.Status)
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	out, err := os.Create(f)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	return out.Close()
}
