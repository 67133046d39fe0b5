package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand: it parses its own flags and returns an exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env *cliEnv) error
}

// cliEnv carries the process's streams so tests can run commands in-process.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

// errUsage marks errors that are the caller's fault (exit 2).
var errUsage = errors.New("usage")

// exitError carries a chosen exit code (check exits 1 on invalid configs).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func commands() []command {
	return []command{
		{"run", "consume events and make the API calls (starts the embedded broker when kafka.brokers is empty)", cmdRun},
		{"broker", "run the embedded Kafka-protocol broker alone", cmdBroker},
		{"receive", "run a receiver that prints every call it gets", cmdReceive},
		{"produce", "publish JSON lines from stdin as events", cmdProduce},
		{"check", "validate a config file", cmdCheck},
		{"render", "show which rules match an event and the exact requests; sends nothing", cmdRender},
		{"lag", "committed offset, end offset, lag and lag seconds per partition", cmdLag},
		{"replay", "re-run rules over an offset or time range, or re-drive dead letters", cmdReplay},
		{"version", "print the version", func(_ context.Context, _ []string, env *cliEnv) error {
			fmt.Fprintln(env.stdout, "apicall", version)
			return nil
		}},
	}
}

func runArgs(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &cliEnv{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	return runWith(ctx, args, env)
}

func runWith(ctx context.Context, args []string, env *cliEnv) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], env)
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(env.stderr, ee.err)
			}
			return ee.code
		}
		fmt.Fprintf(env.stderr, "apicall %s: %v\n", c.name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(env.stderr, "apicall: unknown command %q\n\n", args[0])
	usage(env.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "apicall turns user events on Kafka into API calls.\n\nUsage: apicall COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'apicall COMMAND --help' for a command's flags.")
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name string, env *cliEnv) *flag.FlagSet {
	fs := flag.NewFlagSet("apicall "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	return fs
}

// parse parses flags and rejects stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments: %s", errUsage, strings.Join(fs.Args(), " "))
	}
	return nil
}

// newLogger builds the process logger: JSON by default (for log shippers),
// text for people at a terminal.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, format)
}
