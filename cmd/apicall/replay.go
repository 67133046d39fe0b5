package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/consumer"
)

// exitInterrupted is replay's exit code when stopped (Ctrl-C, SIGTERM)
// before the end of its range: 128 + SIGINT, as shells report it.
const exitInterrupted = 130

// cmdReplay re-runs rules over an offset or time range of a topic, or
// re-drives dead letters or parked calls (docs/replay.md).
func cmdReplay(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("replay", env)
	path := fs.String("config", "", "config file (YAML)")
	topic := fs.String("topic", "", "source topic whose range is replayed")
	var parts, rules, hosts listFlag
	fs.Var(&parts, "partition", "partition to replay (repeatable or comma-separated; default: all)")
	var fromOffset, toOffset offsetFlag
	var fromTime, toTime, since timeFlag
	fs.Var(&fromOffset, "from-offset", "first offset, inclusive")
	fs.Var(&fromTime, "from-time", "first record time, RFC3339, inclusive")
	fs.Var(&toOffset, "to-offset", "last offset, inclusive (default: the end when the replay starts)")
	fs.Var(&toTime, "to-time", "last record time, RFC3339, inclusive")
	fs.Var(&rules, "rule", "re-run only this rule (repeatable or comma-separated)")
	fs.Var(&hosts, "host", "re-run only calls to this host or host:port (repeatable or comma-separated)")
	rate := fs.Float64("rate", 0, "at most this many events per second (0: no limit)")
	dryRun := fs.Bool("dry-run", false, "print what would be sent; send and write nothing")
	showSecrets := fs.Bool("show-secrets", false, "with --dry-run, print secret values (from ${ENV}) instead of ****")
	deadLetters := fs.Bool("dead-letters", false, "re-drive the calls in outcomes.dead_letter_topic")
	parked := fs.Bool("parked", false, "re-attempt now the calls parked in outcomes.retry_topic")
	fs.Var(&since, "since", "with --dead-letters or --parked: only records written at or after this time (RFC3339)")
	brokers := fs.String("brokers", "", "override kafka.brokers (default: the config's, or the embedded broker's address)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := parse(fs, args); err != nil {
		return err
	}
	ro, err := replayOptions(*path, *topic, parts, fromOffset, fromTime, toOffset, toTime, *deadLetters, *parked, since)
	if err != nil {
		return err
	}
	if *rate < 0 {
		return fmt.Errorf("%w: --rate %v: want 0 (no limit) or more", errUsage, *rate)
	}
	ro.Rules, ro.Hosts, ro.Rate = rules, hosts, *rate
	ro.DryRun, ro.ShowSecrets = *dryRun, *showSecrets
	ro.Out, ro.Status = env.stdout, env.stderr
	log, err := newLogger(env.stderr, "text", *logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path, env.lookupEnv)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	switch {
	case *brokers != "":
		cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	case len(cfg.Kafka.Brokers) == 0:
		// The embedded broker of a running `apicall run`.
		cfg.Kafka.Brokers = []string{cfg.Kafka.EmbeddedListen}
	}
	dec, err := newDecoder(cfg, log, false)
	if err != nil {
		return err
	}
	defer dec.Close()
	disp, err := newDispatcher(cfg, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	defer disp.Close()
	compiled := cfg.Compiled()
	rep, err := consumer.Replay(ctx, consumer.Options{
		Config:     cfg,
		Rules:      func() *config.Rules { return compiled },
		Decoder:    dec,
		Dispatcher: disp,
		Logger:     log,
	}, ro)
	if errors.Is(err, consumer.ErrInvalidReplay) {
		return &exitError{code: 2, err: fmt.Errorf("apicall replay: %w", err)}
	}
	if rep == nil {
		return err
	}
	printReplay(env.stdout, rep)
	if !rep.Complete {
		printResume(env.stdout, rep, ro, *path)
	}
	switch {
	case err != nil:
		return err
	case rep.Failed() > 0:
		return &exitError{code: 1, err: fmt.Errorf("apicall replay: %d calls failed (rejected, parked or dead-lettered)", rep.Failed())}
	case !rep.Complete:
		return &exitError{code: exitInterrupted, err: errors.New("apicall replay: stopped before the end of the range (resume as shown)")}
	}
	return nil
}

// replayOptions checks the source and range flags and turns them into
// options; every problem is a usage error (exit 2).
func replayOptions(path, topic string, parts listFlag, fromOffset offsetFlag, fromTime timeFlag, toOffset offsetFlag, toTime timeFlag, deadLetters, parked bool, since timeFlag) (consumer.ReplayOptions, error) {
	var ro consumer.ReplayOptions
	usage := func(format string, args ...any) (consumer.ReplayOptions, error) {
		return ro, fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
	}
	if path == "" {
		return usage("--config is required")
	}
	redrive := deadLetters || parked
	switch {
	case deadLetters && parked:
		return usage("--dead-letters and --parked: choose one")
	case redrive && topic != "":
		return usage("--topic replays a range; --dead-letters and --parked read apicall's own topics: choose one")
	case redrive && (len(parts) > 0 || fromOffset.set || fromTime.set || toOffset.set || toTime.set):
		return usage("--partition, --from-* and --to-* select a range of --topic; with --dead-letters or --parked use --since")
	case redrive:
		ro.DeadLetters, ro.Parked, ro.Since = deadLetters, parked, since.t
		return ro, nil
	case topic == "":
		return usage("--topic is required (or --dead-letters or --parked)")
	case since.set:
		return usage("--since applies to --dead-letters and --parked; a range starts with --from-offset or --from-time")
	case fromOffset.set && fromTime.set:
		return usage("--from-offset and --from-time: choose one")
	case !fromOffset.set && !fromTime.set:
		return usage("--from-offset or --from-time is required")
	case toOffset.set && toTime.set:
		return usage("--to-offset and --to-time: choose one")
	case fromOffset.set && toOffset.set && fromOffset.v > toOffset.v:
		return usage("--from-offset %d is after --to-offset %d", fromOffset.v, toOffset.v)
	case fromTime.set && toTime.set && fromTime.t.After(toTime.t):
		return usage("--from-time %s is after --to-time %s", fromTime, toTime)
	}
	ro.Topic = topic
	for _, p := range parts {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			return usage("--partition %q: want a partition number (0 or more)", p)
		}
		ro.Partitions = append(ro.Partitions, int32(n))
	}
	ro.From = consumer.Bound{Offset: fromOffset.v, Time: fromTime.t}
	if toOffset.set || toTime.set {
		ro.To = &consumer.Bound{Offset: toOffset.v, Time: toTime.t}
	}
	return ro, nil
}

// printReplay writes the summary: what was read, a table of calls per rule
// and the records skipped.
func printReplay(w io.Writer, rep *consumer.ReplayReport) {
	state := "complete"
	if !rep.Complete {
		state = "stopped before the end"
	}
	fmt.Fprintf(w, "%s: %d of %d records read (%s)\n", rep.Topic, rep.Events, rep.Total, state)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if rep.DryRun {
		fmt.Fprintln(tw, "RULE\tWOULD-SEND")
		for _, r := range rep.Rules {
			fmt.Fprintf(tw, "%s\t%d\n", r.Rule, r.Calls)
		}
	} else {
		fmt.Fprintln(tw, "RULE\tDELIVERED\tREJECTED\tPARKED\tDEAD-LETTERED")
		var sum consumer.RuleTally
		for _, r := range rep.Rules {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", r.Rule, r.Delivered, r.Rejected, r.Parked, r.DeadLettered)
			sum.Delivered += r.Delivered
			sum.Rejected += r.Rejected
			sum.Parked += r.Parked
			sum.DeadLettered += r.DeadLettered
		}
		fmt.Fprintf(tw, "TOTAL\t%d\t%d\t%d\t%d\n", sum.Delivered, sum.Rejected, sum.Parked, sum.DeadLettered)
	}
	tw.Flush()
	if len(rep.Skipped) == 0 {
		return
	}
	reasons := make([]string, 0, len(rep.Skipped))
	for r := range rep.Skipped {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	fmt.Fprintln(w, "not re-sent:")
	for _, r := range reasons {
		fmt.Fprintf(w, "  %s: %d (first: %s)\n", r, rep.Skipped[r], rep.SkipExample[r])
	}
}

// printResume says how to carry on after a stop: per unfinished partition
// the next offset of a range, or the --since of a re-drive.
func printResume(w io.Writer, rep *consumer.ReplayReport, ro consumer.ReplayOptions, path string) {
	var cmd strings.Builder
	fmt.Fprintf(&cmd, "apicall replay --config %s", path)
	for _, r := range ro.Rules {
		fmt.Fprintf(&cmd, " --rule %s", r)
	}
	for _, h := range ro.Hosts {
		fmt.Fprintf(&cmd, " --host %s", h)
	}
	if ro.Rate > 0 {
		fmt.Fprintf(&cmd, " --rate %v", ro.Rate)
	}
	if ro.DryRun {
		cmd.WriteString(" --dry-run")
	}
	if ro.DeadLetters || ro.Parked {
		flag := "--dead-letters"
		if ro.Parked {
			flag = "--parked"
		}
		var earliest time.Time
		for _, p := range rep.Partitions {
			if !p.Done() && !p.NextTime.IsZero() && (earliest.IsZero() || p.NextTime.Before(earliest)) {
				earliest = p.NextTime
			}
		}
		fmt.Fprintf(w, "stopped before the end; resume with: %s %s", cmd.String(), flag)
		if !earliest.IsZero() {
			fmt.Fprintf(w, " --since %s", earliest.UTC().Format(time.RFC3339Nano))
		}
		fmt.Fprintln(w, "\n(a call re-driven twice keeps its Idempotency-Key)")
		return
	}
	for _, p := range rep.Partitions {
		if p.Done() {
			continue
		}
		fmt.Fprintf(w, "%s/%d: next offset %d: resume with %s --topic %s --partition %d --from-offset %d --to-offset %d\n",
			p.Topic, p.Partition, p.Next, cmd.String(), p.Topic, p.Partition, p.Next, p.Last)
	}
}

// listFlag is a repeatable flag; each value may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			return errors.New("empty value")
		}
		*l = append(*l, v)
	}
	return nil
}

// offsetFlag is an offset flag that knows whether it was given.
type offsetFlag struct {
	v   int64
	set bool
}

func (o *offsetFlag) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}

func (o *offsetFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return errors.New("want an offset (0 or more)")
	}
	o.v, o.set = v, true
	return nil
}

// timeFlag is an RFC3339 time flag that knows whether it was given.
type timeFlag struct {
	t   time.Time
	set bool
}

func (f *timeFlag) String() string {
	if !f.set {
		return ""
	}
	return f.t.Format(time.RFC3339Nano)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC3339 time such as 2026-11-24T16:00:00Z")
	}
	f.t, f.set = t, true
	return nil
}
