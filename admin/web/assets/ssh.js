// The SSH terminal page (/devices/{id}/ssh): xterm.js in #terminal,
// connected to the device's SSH server through the reflector's WebSocket.
// Control messages are JSON text, terminal bytes binary (docs/web-ssh.md).
// Nothing typed here is kept: the password goes into the first message and
// the field is emptied.
"use strict";

// xterm.js makes <style> elements (xtermjs/xterm.js#4445). The page's CSP
// lets through only those carrying its nonce, which this script's own tag
// carries: stamp it on every <style> as it is made, before it is inserted.
// This script runs before xterm.js (the page orders them).
(() => {
  const nonce = document.currentScript && document.currentScript.nonce;
  if (!nonce) {
    return;
  }
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (name, options) {
    const el = create.call(this, name, options);
    if (String(name).toLowerCase() === "style") {
      el.setAttribute("nonce", nonce);
    }
    return el;
  };
})();

// A paste is sent in binary messages of at most this many bytes (the
// reflector takes 64 KiB).
const chunk = 16 << 10;

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("ssh");
  if (!root) {
    return;
  }
  const $ = (id) => document.getElementById(id);
  const loginForm = $("ssh-login"), promptForm = $("ssh-prompt"), questions = $("ssh-questions");
  const status = $("ssh-status"), hostKey = $("ssh-hostkey"), errorBox = $("ssh-error"), box = $("terminal");
  const encoder = new TextEncoder();
  let term = null, fit = null, ws = null, ended = false, started = false;

  const setState = (s) => { root.dataset.state = s; };
  const say = (text) => { status.textContent = text; };
  const fail = (text) => { errorBox.textContent = text; errorBox.hidden = false; };

  function send(bytes) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return;
    }
    for (let i = 0; i < bytes.length; i += chunk) {
      ws.send(bytes.subarray(i, i + chunk));
    }
  }
  function sendJSON(m) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(m));
    }
  }

  function terminal() {
    if (term) {
      return;
    }
    box.hidden = false;
    term = new Terminal({cursorBlink: true, scrollback: 5000, fontSize: 14,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"});
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    term.onData((d) => send(encoder.encode(d)));
    // Mouse reports in the legacy encoding: bytes, not UTF-8.
    term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 255)));
    term.onResize(({cols, rows}) => sendJSON({type: "resize", cols, rows}));
    // Ctrl+C is the shell's; Ctrl+Shift+C copies the selection and
    // Ctrl+Shift+V leaves the key to the browser, which pastes (xterm.js
    // sends the paste, bracketed when the shell asks for it).
    term.attachCustomKeyEventHandler((ev) => {
      if (ev.type !== "keydown" || !ev.ctrlKey || !ev.shiftKey) {
        return true;
      }
      if (ev.code === "KeyC") {
        const sel = term.getSelection();
        if (sel && navigator.clipboard) {
          navigator.clipboard.writeText(sel).catch(() => {});
        }
        ev.preventDefault();
        return false;
      }
      return ev.code !== "KeyV";
    });
    window.addEventListener("resize", () => fit.fit());
  }

  function showPrompt(m) {
    $("ssh-instruction").textContent = [m.name, m.instruction].filter(Boolean).join(": ");
    questions.replaceChildren();
    (m.prompts || []).forEach((p, i) => {
      const label = document.createElement("label");
      label.htmlFor = "ssh-answer-" + i;
      label.textContent = p.text;
      const input = document.createElement("input");
      input.id = "ssh-answer-" + i;
      input.type = p.echo ? "text" : "password";
      input.autocomplete = "off";
      questions.append(label, input);
    });
    promptForm.hidden = false;
    const first = questions.querySelector("input");
    if (first) {
      first.focus();
    }
  }

  promptForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const answers = [...questions.querySelectorAll("input")].map((i) => i.value);
    questions.replaceChildren();
    promptForm.hidden = true;
    sendJSON({type: "answers", answers});
    term.focus();
  });

  function connect(user, password) {
    ended = false;
    started = false;
    setState("connecting");
    say(root.dataset.connecting);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + root.dataset.socket);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      sendJSON({type: "auth", user, password, cols: term.cols, rows: term.rows});
      password = "";
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        term.write(new Uint8Array(ev.data));
        return;
      }
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      switch (m.type) {
      case "hostkey":
        hostKey.textContent = (m.status === "new" ? root.dataset.hostKeyNew : root.dataset.hostKeyKnown) +
          " " + m.keyType + " " + m.fingerprint;
        break;
      case "prompt":
        showPrompt(m);
        break;
      case "ready":
        started = true;
        setState("ready");
        say(root.dataset.connected);
        term.focus();
        break;
      case "exit":
        ended = true;
        setState("closed");
        say(m.message);
        break;
      case "error":
        ended = true;
        setState(m.code === "hostkey-changed" ? "hostkey-changed" : "error");
        say("");
        fail(m.message);
        // No shell ran: no empty terminal under the message.
        box.hidden = !started;
        break;
      }
    };
    ws.onclose = () => {
      if (!ended) {
        setState("closed");
        say(root.dataset.closed);
      }
      promptForm.hidden = true;
      loginForm.hidden = false;
      ws = null;
    };
  }

  loginForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("ssh-user").value;
    const password = $("ssh-password").value;
    $("ssh-password").value = "";
    errorBox.hidden = true;
    hostKey.textContent = "";
    loginForm.hidden = true;
    terminal();
    box.hidden = false;
    fit.fit();
    term.reset();
    connect(user, password);
  });
  // The form's fields have no names and its button is off until now: sent
  // by the browser itself, before this script could take it, it would put
  // nothing in the URL.
  loginForm.querySelector("button[type=submit]").disabled = false;
  $("ssh-user").focus();
});
