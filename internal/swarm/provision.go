package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reflector-dev/reflector/internal/control"
)

// device is one provisioned device: its id and the secret its agent sends.
type device struct{ id, secret string }

// deviceID names the i-th device of a swarm.
func deviceID(i int) string { return fmt.Sprintf("swarm-%05d", i) }

// secretsFile lists a provisioned fleet's devices, "id,secret" a line. It is
// written last, so a cache directory without it is an interrupted one.
const secretsFile = "secrets.csv"

// importChunk is how many devices go into one `device import` file: a
// file travels as one control request of at most 1 MiB, and 5,000 lines of
// about 50 bytes stay well below it.
const importChunk = 5000

// provisioned returns the data directory and devices of a fleet of
// cfg.Devices devices with cfg.Secrets: from cfg.Cache when an earlier run
// left it there, else provisioned now with cfg.Reflector, in cfg.Cache
// (kept for later runs) or in scratch. took is 0 for a cached fleet. The
// directory returned is not to be written: runs work on a copy.
func provisioned(ctx context.Context, cfg Config, scratch string) (data string, devs []device, took time.Duration, err error) {
	dir := filepath.Join(scratch, "provision")
	if cfg.Cache != "" {
		dir = filepath.Join(cfg.Cache, fmt.Sprintf("%s-%d", cfg.Secrets, cfg.Devices))
		if devs, err := readSecrets(filepath.Join(dir, secretsFile), cfg.Devices); err == nil {
			return filepath.Join(dir, "data"), devs, 0, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, 0, err
		}
		if err := os.RemoveAll(dir); err != nil { // an interrupted provisioning
			return "", nil, 0, fmt.Errorf("provision: %w", err)
		}
	}
	data = filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return "", nil, 0, fmt.Errorf("provision: %w", err)
	}
	start := time.Now()
	logf, err := os.Create(filepath.Join(dir, "provision.log"))
	if err != nil {
		return "", nil, 0, fmt.Errorf("provision: %w", err)
	}
	defer logf.Close()
	port, err := freePort()
	if err != nil {
		return "", nil, 0, err
	}
	// With the server running, each command is one request on its control
	// socket, so several may run at once.
	srv, err := startReflector(ctx, cfg.Reflector, data, port, 0, nil, logf)
	if err != nil {
		return "", nil, 0, fmt.Errorf("provision: %w", err)
	}
	defer srv.stop()
	if cfg.Secrets == Adopted {
		devs, err = importAdopted(ctx, cfg, dir, data)
	} else {
		devs, err = addGenerated(ctx, cfg, data)
	}
	if err != nil {
		return "", nil, 0, fmt.Errorf("provision %d devices (log: %s): %w", cfg.Devices, logf.Name(), err)
	}
	if err := writeSecrets(filepath.Join(dir, secretsFile), devs); err != nil {
		return "", nil, 0, err
	}
	return data, devs, time.Since(start), nil
}

var secretRe = regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`)

// addGenerated adds the devices with `device add`, each printing the
// secret the reflector generated, a few at a time through the control
// socket of the reflector running on data; the first failure stops the
// others.
func addGenerated(ctx context.Context, cfg Config, data string) ([]device, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	devs := make([]device, cfg.Devices)
	next := make(chan int)
	var added atomic.Int64
	stop := every(5*time.Second, func() {
		progressf(cfg, "provisioning: %d of %d devices added\n", added.Load(), cfg.Devices)
	})
	defer stop()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				id := deviceID(i)
				// In process, over the running reflector's control socket
				// (the protocol of `reflector device add`): a process per
				// device added about 7 a second on a loaded machine.
				var buf bytes.Buffer
				var err error
				if code := control.Main(ctx, data, []string{"device", "add", id}, nil, &buf, &buf, nil); code != 0 {
					err = fmt.Errorf("exit status %d", code)
				}
				out := buf.Bytes()
				m := secretRe.FindSubmatch(out)
				if err == nil && m == nil {
					err = errors.New("no REFLECTOR_DEVICE_SECRET in its output")
				}
				if err != nil {
					cancel(fmt.Errorf("device add %s: %w: %s", id, err, bytes.TrimSpace(out)))
					continue
				}
				devs[i] = device{id: id, secret: string(m[1])}
				added.Add(1)
			}
		})
	}
feed:
	for i := range cfg.Devices {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return devs, context.Cause(ctx)
}

// every calls f every d until the returned stop is called.
func every(d time.Duration, f func()) (stop func()) {
	t := time.NewTicker(d)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// progressf writes a progress line to cfg.Progress, if set.
func progressf(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format, args...)
	}
}

// importAdopted gives every device a random password, as a WebTunnelAgent
// fleet has its own, and imports them with `device import` (the reflector
// stores each as argon2id, which is what makes this slow).
func importAdopted(ctx context.Context, cfg Config, dir, data string) ([]device, error) {
	devs := make([]device, cfg.Devices)
	for i := range devs {
		b := make([]byte, 18)
		rand.Read(b)
		devs[i] = device{id: deviceID(i), secret: base64.RawURLEncoding.EncodeToString(b)}
	}
	file := filepath.Join(dir, "import.csv")
	defer os.Remove(file)
	for lo := 0; lo < len(devs); lo += importChunk {
		if err := writeCSV(file, devs[lo:min(lo+importChunk, len(devs))], true); err != nil {
			return nil, err
		}
		progressf(cfg, "provisioning: importing devices %d to %d of %d (argon2id each)\n", lo, min(lo+importChunk, len(devs))-1, len(devs))
		out, err := exec.CommandContext(ctx, cfg.Reflector, "device", "import", file, "--data", data).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("device import of devices %d…: %w: %s", lo, err, bytes.TrimSpace(out))
		}
	}
	return devs, nil
}

// writeCSV writes devs as "id,secret" lines, or, for `device import`,
// "id,password,group" with no group.
func writeCSV(path string, devs []device, forImport bool) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for _, d := range devs {
		rec := []string{d.id, d.secret}
		if forImport {
			rec = append(rec, "")
		}
		w.Write(rec)
	}
	w.Flush()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeSecrets writes the secrets file of a provisioned fleet, whole or not
// at all.
func writeSecrets(path string, devs []device) error {
	tmp := path + ".tmp"
	if err := writeCSV(tmp, devs, false); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readSecrets reads a secrets file that must list n devices.
func readSecrets(path string, n int) ([]device, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(recs) != n {
		return nil, fmt.Errorf("read %s: %d devices, want %d: remove the directory to provision again", path, len(recs), n)
	}
	devs := make([]device, n)
	for i, r := range recs {
		if len(r) != 2 || r[0] != deviceID(i) {
			return nil, fmt.Errorf("read %s: line %s is not device %s: remove the directory to provision again", path, strconv.Itoa(i+1), deviceID(i))
		}
		devs[i] = device{id: r[0], secret: r[1]}
	}
	return devs, nil
}

// copyData copies the regular files of a data directory (the database and
// the certificate; not the control socket), so that every run starts from
// the same provisioned state and the cache is never written by a run.
func copyData(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case !d.Type().IsRegular():
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("copy data: %w", err)
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return fmt.Errorf("copy data: %w", err)
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy data: %w", err)
		}
		return out.Close()
	})
}
