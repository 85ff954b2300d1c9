// Command sbbench is Switchboard's load generator: idle, direct, broadcast
// and churn scenarios over the WebSocket protocol, every run bounded in
// time (hard cap 10 minutes). See internal/bench and scripts/bench.sh.
//
//	sbbench -url ws://127.0.0.1:8080/ws -scenario direct -pairs 100 -duration 10s
//	sbbench -scenario direct -pairs 200 -rate 10000 -duration 20s -json
//	sbbench -scenario idle -conns 15000 -pid $(pidof switchboard)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/switchboard/switchboard/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sbbench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := bench.ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	_, err = bench.Run(ctx, cfg, stdout, stderr)
	return err
}
