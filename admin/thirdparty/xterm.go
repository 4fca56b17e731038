package thirdparty

import "embed"

// XTerm is xterm.js and its fit add-on, the terminal of the browser's SSH
// page (admin/web's /devices/{id}/ssh): xterm/xterm.js, xterm/xterm.css,
// xterm/addon-fit.js, their licences and xterm/VERSION, which says where
// they come from.
//
//go:embed xterm
var XTerm embed.FS
