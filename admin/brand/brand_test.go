package brand

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the table of text keys in docs/branding.md from Defaults")

// docPath is the branding guide, whose table of text keys must be Defaults'.
const docPath = "../../docs/branding.md"

// The markers around the generated table in docPath.
const (
	tableBegin = "<!-- text keys: begin (go test ./admin/brand -run TestDocsListEveryTextKey -update) -->"
	tableEnd   = "<!-- text keys: end -->"
)

// keyTable is the Markdown table of every key of Defaults with its text,
// sorted by key.
func keyTable() string {
	keys := make([]string, 0, len(Defaults))
	for k := range Defaults {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("| Key | Default |\n|---|---|\n")
	for _, k := range keys {
		v := Defaults[k]
		if v == "" {
			v = "*(empty)*"
		} else {
			v = strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", "*", `\*`, "_", `\_`, "`", "\\`").Replace(v)
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", k, v)
	}
	return b.String()
}

// docKeys are the keys the table in doc names, in order.
func docKeys(table string) []string {
	var keys []string
	for _, line := range strings.Split(table, "\n") {
		if k, ok := strings.CutPrefix(line, "| `"); ok {
			if k, _, ok = strings.Cut(k, "`"); ok {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// TestDocsListEveryTextKey checks that docs/branding.md lists every text
// key, and no other; with -update it rewrites the table between the
// markers from Defaults.
func TestDocsListEveryTextKey(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := bytes.Cut(doc, []byte(tableBegin))
	if !ok {
		t.Fatalf("%s lacks the marker %s", docPath, tableBegin)
	}
	table, after, ok := bytes.Cut(rest, []byte(tableEnd))
	if !ok {
		t.Fatalf("%s lacks the marker %s", docPath, tableEnd)
	}
	if *update {
		var out bytes.Buffer
		out.Write(before)
		out.WriteString(tableBegin + "\n\n" + keyTable() + "\n" + tableEnd)
		out.Write(after)
		if err := os.WriteFile(docPath, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	listed := docKeys(string(table))
	for k := range Defaults {
		if !slices.Contains(listed, k) {
			t.Errorf("%s does not list text key %q (run go test ./admin/brand -run TestDocsListEveryTextKey -update)", docPath, k)
		}
	}
	for _, k := range listed {
		if _, ok := Defaults[k]; !ok {
			t.Errorf("%s lists text key %q, which does not exist", docPath, k)
		}
	}
	if !strings.Contains(string(table), keyTable()) {
		t.Errorf("%s's table of text keys is not Defaults' (run go test ./admin/brand -run TestDocsListEveryTextKey -update)", docPath)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadReadsTheFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"texts.json":  `{"productName": "Acme Remote", "signIn.title": "Welcome to Acme"}`,
		"style.css":   "body{background:#123456}",
		"logo.svg":    `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"favicon.png": "\x89PNG",
		"other.txt":   "not served",
	})
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.ProductName() != "Acme Remote" || b.Text("signIn.title") != "Welcome to Acme" {
		t.Errorf("texts: %q, %q", b.ProductName(), b.Text("signIn.title"))
	}
	if b.Text("signIn.button") != Defaults["signIn.button"] {
		t.Errorf("a text not overridden is %q", b.Text("signIn.button"))
	}
	if string(b.Style) != "body{background:#123456}" {
		t.Errorf("style %q", b.Style)
	}
	if b.LogoType != "image/svg+xml" || !strings.Contains(string(b.Logo), "<svg") {
		t.Errorf("logo %s %q", b.LogoType, b.Logo)
	}
	if b.FaviconType != "image/png" || string(b.Favicon) != "\x89PNG" {
		t.Errorf("favicon %s %q", b.FaviconType, b.Favicon)
	}
	// Overrides stay with the brand that loaded them.
	if Default().ProductName() != Defaults["productName"] {
		t.Error("Load changed the defaults")
	}
}

func TestLoadEmptyDirIsTheDefault(t *testing.T) {
	b, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b.ProductName() != "Reflector" || b.Style != nil || b.Logo != nil || b.Favicon != nil {
		t.Errorf("empty brand directory: %+v", b)
	}
	if b, err = Load(""); err != nil || b.ProductName() != "Reflector" {
		t.Errorf(`Load(""): %v, %v`, b, err)
	}
}

func TestLoadRefusesAnUnknownKeyNamingIt(t *testing.T) {
	dir := writeFiles(t, map[string]string{"texts.json": `{"productName": "Acme", "signin.title": "typo"}`})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "signin.title") || !strings.Contains(err.Error(), "texts.json") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestLoadRefusesBadJSON(t *testing.T) {
	for _, texts := range []string{`["productName"]`, `{"productName": 3}`, `{`} {
		if _, err := Load(writeFiles(t, map[string]string{"texts.json": texts})); err == nil {
			t.Errorf("texts.json %s accepted", texts)
		}
	}
}

func TestLoadRefusesATooLargeFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"style.css": strings.Repeat("a", maxFile+1)})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "style.css") || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("too large style.css: %v", err)
	}
}

func TestLoadMissingDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing directory: %v", err)
	}
	file := writeFiles(t, map[string]string{"texts.json": "{}"})
	if _, err := Load(filepath.Join(file, "texts.json")); err == nil {
		t.Fatal("a file as the brand directory was accepted")
	}
}

func TestUnknownTextShowsItsKey(t *testing.T) {
	if got := Default().Text("no.such.key"); got != "no.such.key" {
		t.Errorf("Text of an unknown key = %q", got)
	}
}
