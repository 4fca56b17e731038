package control

import (
	"fmt"
	"image/color"
	"io"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// qrQuietZone is the light border around a QR code, in modules. The
// standard asks for four; two is what terminal QR printers use, and phone
// cameras read it, while the code stays small enough for an 80×24 terminal.
const qrQuietZone = 2

// writeQR draws content as a QR code in Unicode half blocks: one character
// is one module wide and two high, so the code comes out about square.
//
// Plain text has one colour to draw with, the terminal's foreground, so the
// light modules (and the quiet zone) are drawn and the dark ones left blank.
// On the usual dark terminal that is the code as printed on paper; on a
// light one it is the inverse, which phone scanners read as well.
func writeQR(w io.Writer, content string) error {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return fmt.Errorf("encode QR code: %w", err)
	}
	b := code.Bounds()
	n := b.Dx()
	size := n + 2*qrQuietZone
	light := func(x, y int) bool {
		if y >= size {
			return false // below the last row: not part of the drawing
		}
		x, y = x-qrQuietZone, y-qrQuietZone
		if x < 0 || y < 0 || x >= n || y >= n {
			return true // quiet zone
		}
		return !isDark(code.At(b.Min.X+x, b.Min.Y+y))
	}
	var sb strings.Builder
	for y := 0; y < size; y += 2 {
		for x := range size {
			switch top, bottom := light(x, y), light(x, y+1); {
			case top && bottom:
				sb.WriteRune('█')
			case top:
				sb.WriteRune('▀')
			case bottom:
				sb.WriteRune('▄')
			default:
				sb.WriteByte(' ')
			}
		}
		sb.WriteByte('\n')
	}
	_, err = io.WriteString(w, sb.String())
	return err
}

// isDark reports whether a module's colour is dark.
func isDark(c color.Color) bool {
	return color.GrayModel.Convert(c).(color.Gray).Y < 0x80
}
