// Package thirdparty holds third-party browser code, vendored from npm with
// its licences and embedded in the binary: reflectors run on closed
// networks, so nothing is fetched from a CDN, and nothing is built at run or
// test time (DESIGN.md, "Web UI and API"). The files are the packages' own,
// unchanged; each directory has a VERSION note saying where they came from.
//
// noVNC (novnc/) is the VNC client of the web UI's viewer (admin/web) and
// of the noVNC app on device hosts (admin). To update it to version V:
//
//	cd /tmp && npm pack @novnc/novnc@V && tar xzf novnc-novnc-V.tgz
//	git clone --depth 1 --branch vV https://github.com/novnc/noVNC
//
// then replace novnc/core, novnc/pako (the package's vendor/pako),
// package.json, LICENSE.txt, AUTHORS and docs/LICENSE.* from the npm package,
// and novnc/app (without app/images/icons/Makefile), vnc.html,
// defaults.json and mandatory.json from the tag, which the npm package
// leaves out; update novnc/VERSION, run the web UI's browser tests
// (go test ./integration -run 'VNC') and read the release notes for API
// changes used by admin/web/assets/vnc.js.
package thirdparty

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed novnc
var novncFiles embed.FS

// NoVNC is noVNC's tree as its files expect to be served: vnc.html, app/,
// core/ and vendor/pako/. The module zips of the go command leave out
// every file below a directory named vendor (golang.org/x/mod/zip), so
// noVNC's vendor/pako is stored as novnc/pako and NoVNC shows it at
// vendor/pako again, where core/inflator.js and core/deflator.js import it.
var NoVNC fs.FS = noVNCTree{}

// noVNCTree maps noVNC's paths to where they are stored.
type noVNCTree struct{}

const vendoredPako = "vendor/pako"

func (noVNCTree) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	var stored string
	switch {
	case name == ".":
		stored = "novnc"
	case name == vendoredPako || strings.HasPrefix(name, vendoredPako+"/"):
		stored = "novnc/pako" + strings.TrimPrefix(name, vendoredPako)
	case name == "pako" || strings.HasPrefix(name, "pako/"):
		// Only at its noVNC path.
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	default:
		stored = "novnc/" + name
	}
	f, err := novncFiles.Open(stored)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, nil
}
