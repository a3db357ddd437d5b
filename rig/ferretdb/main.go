// Command ferretdb is the test rig's embedded FerretDB (SQLite backend)
// serving the MongoDB wire protocol on loopback.
//
// Usage: ferretdb -dir /abs/data [-listen 127.0.0.1:0]
//
// Prints "FERRETDB_READY mongodb://127.0.0.1:PORT/" once the port accepts
// connections. Exits on SIGINT/SIGTERM or when stdin reaches EOF.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on (port 0 = pick a free one)")
	dir := flag.String("dir", "", "absolute data directory (created if missing)")
	flag.Parse()

	if err := run(*listen, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb rig:", err)
		os.Exit(1)
	}
}

func run(listen, dir string) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Parent gone (stdin closed) => shut down.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	// The embedded package keeps telemetry disabled and its state in memory only
	// (state.NewProvider("")), so nothing is written outside -dir.
	// New binds the listener itself, so port 0 works and MongoDBURI reports the real port.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: (&url.URL{Scheme: "file", Opaque: dir + "/"}).String(),
	})
	if err != nil {
		return err
	}

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	uri := f.MongoDBURI()
	u, err := url.Parse(uri)
	if err != nil {
		cancel()
		<-done
		return err
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, derr := net.DialTimeout("tcp", u.Host, time.Second)
		if derr == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			cancel()
			<-done
			return fmt.Errorf("not accepting connections on %s: %v", u.Host, derr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	fmt.Printf("FERRETDB_READY %s\n", uri)

	return <-done
}
