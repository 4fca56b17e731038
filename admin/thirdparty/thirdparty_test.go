package thirdparty

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
)

// importRE finds the module paths of static imports ("import x from './y.js'",
// "export … from '…'") in noVNC's sources.
var importRE = regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'"]*?from\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']`)

// Every module noVNC's viewer and app load, and every module they import
// in turn, is in the tree at the path the import names: vendor/pako
// included, which is stored elsewhere.
func TestNoVNCImportsResolve(t *testing.T) {
	seen := map[string]bool{}
	queue := []string{"core/rfb.js", "app/ui.js", "app/error-handler.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		src, err := fs.ReadFile(NoVNC, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, m := range importRE.FindAllStringSubmatch(string(src), -1) {
			spec := m[1] + m[2]
			if !strings.HasPrefix(spec, ".") {
				t.Errorf("%s imports %q, not a relative path", name, spec)
				continue
			}
			queue = append(queue, path.Join(path.Dir(name), spec))
		}
	}
	if !seen["vendor/pako/lib/zlib/inflate.js"] {
		t.Errorf("the walk never reached pako's inflate.js; imports seen: %d", len(seen))
	}
	for _, f := range []string{"vnc.html", "LICENSE.txt", "VERSION", "vendor/pako/LICENSE", "defaults.json", "mandatory.json", "package.json"} {
		if _, err := fs.Stat(NoVNC, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := fs.Stat(NoVNC, "pako/LICENSE"); err == nil {
		t.Error("pako is reachable at its stored path, not only at vendor/pako")
	}
}
