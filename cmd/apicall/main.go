// Command apicall turns user events on Kafka into API calls. main only
// builds the context and hands the arguments to runArgs, which tests call
// directly.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runArgs(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
