// Command reflector is the Reflector server and its admin commands.
//
//	reflector serve [flags]              run the server
//	reflector user add|list|set|passwd|rm, user totp enable|disable
//	reflector token create|list|revoke   API tokens
//	reflector group add|list|set|rm      groups and device quotas
//	reflector device add|list|set|rotate-secret|disable|enable|rm
//	reflector enroll create|list|rm      enrolment keys for agents
//	reflector audit [filters]            the audit log
//
// Admin commands take --data and work whether or not a server runs on that
// data directory: with one running they are carried to it over the control
// socket in the data directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/reflector-dev/reflector/internal/control"
	"github.com/reflector-dev/reflector/internal/server"
)

const defaultData = "./reflector-data"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		return 2
	}
	if args[0] == "serve" {
		return serve(ctx, args[1:], stdout, stderr)
	}
	data, rest, err := extractData(args)
	if err != nil {
		fmt.Fprintln(stderr, "reflector:", err)
		return 2
	}
	return control.Main(ctx, data, rest, stdin, stdout, stderr, func() (string, string) {
		return offlineIdentity(data)
	})
}

// extractData takes --data DIR (or --data=DIR) out of an admin command's
// arguments, wherever it appears.
func extractData(args []string) (string, []string, error) {
	data := defaultData
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "data" {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("--data needs a directory")
			}
			i++
			value = args[i]
		}
		data = value
	}
	return data, rest, nil
}

// offlineIdentity is what an admin command prints about the reflector when no
// server runs: the default URL, and the fingerprint of a kept self-signed
// certificate if there is one.
func offlineIdentity(data string) (url, fingerprint string) {
	cert, err := server.LoadCertificate(filepath.Join(data, server.CertFile), filepath.Join(data, server.KeyFile))
	if err != nil {
		return "https://localhost:8443", ""
	}
	host := "localhost"
	if cert.Leaf != nil && len(cert.Leaf.DNSNames) > 0 {
		host = cert.Leaf.DNSNames[0]
	}
	return "https://" + host + ":8443", server.CertificateFingerprint(cert)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: reflector <command> [flags]

  serve
        run the reflector (reflector serve --help)

`)
	control.Usage(w)
	fmt.Fprint(w, `
Admin commands take --data DIR (default ./reflector-data) and work whether
or not a server runs on that directory.
`)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
