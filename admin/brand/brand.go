// Package brand is how the reflector's web pages look and what they say:
// the texts of every page (the product name among them), and an OEM's
// optional stylesheet, logo and favicon from serve --brand-dir, so that a
// company ships the reflector under its own name without forking it.
//
// A brand directory may hold:
//
//	texts.json   {"productName": "Acme Remote", "signIn.title": "…"}: any of
//	             the keys of Defaults; an unknown key is refused at start
//	style.css    loaded after the reflector's own stylesheet
//	logo.svg | logo.png        shown in the header
//	favicon.ico | favicon.png | favicon.svg
//
// Files are read once at start; nothing else in the directory is served.
package brand

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxFile bounds each file of a brand directory.
const maxFile = 1 << 20

// Brand is a loaded brand: texts, and the optional files.
type Brand struct {
	texts map[string]string
	// Style is the brand's stylesheet, nil for none.
	Style []byte
	// Logo and Favicon are the images with their content types; nil for
	// none.
	Logo, Favicon         []byte
	LogoType, FaviconType string
}

// Default is the reflector's own brand: Defaults, no files.
func Default() *Brand { return &Brand{texts: maps.Clone(Defaults)} }

// Load reads a brand directory; "" is Default.
func Load(dir string) (*Brand, error) {
	b := Default()
	if dir == "" {
		return b, nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("brand directory %s: not a directory", dir)
	}
	if data, err := readFile(dir, "texts.json"); err != nil {
		return nil, err
	} else if data != nil {
		if err := b.setTexts(data); err != nil {
			return nil, fmt.Errorf("brand %s: %w", filepath.Join(dir, "texts.json"), err)
		}
	}
	var err error
	if b.Style, err = readFile(dir, "style.css"); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, ctype string }{{"logo.svg", "image/svg+xml"}, {"logo.png", "image/png"}} {
		if b.Logo != nil {
			break
		}
		if b.Logo, err = readFile(dir, f.name); err != nil {
			return nil, err
		}
		b.LogoType = f.ctype
	}
	for _, f := range []struct{ name, ctype string }{{"favicon.ico", "image/x-icon"}, {"favicon.png", "image/png"}, {"favicon.svg", "image/svg+xml"}} {
		if b.Favicon != nil {
			break
		}
		if b.Favicon, err = readFile(dir, f.name); err != nil {
			return nil, err
		}
		b.FaviconType = f.ctype
	}
	return b, nil
}

// readFile reads name in dir, at most maxFile bytes; nil when it does not
// exist.
func readFile(dir, name string) ([]byte, error) {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("brand: %w", err)
	case len(data) > maxFile:
		return nil, fmt.Errorf("brand: %s is larger than %d bytes", path, maxFile)
	}
	return data, nil
}

// setTexts overrides texts with a JSON object of strings; unknown keys
// are refused, naming the known ones, so that a typo does not pass
// silently.
func (b *Brand) setTexts(data []byte) error {
	var over map[string]string
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&over); err != nil {
		return fmt.Errorf("want a JSON object of strings: %w", err)
	}
	var unknown []string
	for k, v := range over {
		if _, ok := Defaults[k]; !ok {
			unknown = append(unknown, k)
			continue
		}
		b.texts[k] = v
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown keys %s (docs/branding.md lists the keys)", strings.Join(unknown, ", "))
	}
	return nil
}

// Text is the text of key; a key not in Defaults is a programming error,
// shown as the key itself so that it is seen.
func (b *Brand) Text(key string) string {
	if t, ok := b.texts[key]; ok {
		return t
	}
	return key
}

// ProductName is the product's name, in titles and the header.
func (b *Brand) ProductName() string { return b.Text("productName") }
