package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultStateName is the state file's name when there is no config file to
// put it beside: in the working directory.
const DefaultStateName = "reflector-agent.state"

// State is what the state file holds: the secret an enrolment obtained, the
// device it belongs to and the reflector that issued it. It is one JSON
// object, written with mode 0600:
//
//	{"device":"pump-17","secret":"…","reflector":"https://reflector.example.com:8443"}
type State struct {
	Device    string `json:"device"`
	Secret    string `json:"secret"`
	Reflector string `json:"reflector"`
}

// DefaultStatePath is where the state file goes when none is named: beside
// the config file, with its base name and the extension ".state"
// (/etc/WebTunnelAgent.properties → /etc/WebTunnelAgent.state), or, without
// a config file, DefaultStateName in the working directory.
func DefaultStatePath(configFile string) string {
	if configFile == "" {
		return DefaultStateName
	}
	base := filepath.Base(configFile)
	name := strings.TrimSuffix(base, filepath.Ext(base))
	if name == "" { // a dot file such as ".properties"
		name = base
	}
	return filepath.Join(filepath.Dir(configFile), name+".state")
}

// errNoState: the state file does not exist.
var errNoState = errors.New("no state file")

// loadState reads the state file at path for device. A file that does not
// exist is errNoState (wrapping fs.ErrNotExist); one that cannot be read or
// parsed, holds no secret or is another device's is an error naming the
// file: the agent must not guess, nor enrol over it.
func loadState(path, device string) (State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w %s: %w", errNoState, path, err)
	}
	if err != nil {
		return State{}, fmt.Errorf("state file %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("state file %s is not valid (%v): move it away to enrol again", path, err)
	}
	switch {
	case st.Device != device:
		return State{}, fmt.Errorf("state file %s is for device %q, not %q: give each device its own state file (--state)", path, st.Device, device)
	case st.Secret == "":
		return State{}, fmt.Errorf("state file %s holds no secret: move it away to enrol again", path)
	}
	return st, nil
}

// checkStateDir fails if a state file cannot be written at path, so that an
// agent learns it before enrolling, while its key is still unused, rather
// than after, with a secret it cannot keep.
func checkStateDir(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("state file %s cannot be written: %w", path, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// writeState writes st to path atomically: a temporary file in the same
// directory, mode 0600, synced, then renamed over path, and the directory
// synced, so that a crash leaves either no state file or a whole one.
func writeState(path string, st State) (err error) {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp's mode already is 0600; Chmod says so where a umask or an
	// unusual file system might not.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("state file %s: write: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state file %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	// The rename is durable once the directory is synced. Not every system
	// can open a directory for that (Windows cannot); the file is whole
	// either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
