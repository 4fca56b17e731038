// The reflector's VNC viewer: noVNC's RFB client on the page's screen
// element, over the WebSocket the page names (data-socket, on this admin
// host), with the connection's state, Ctrl-Alt-Del, the clipboard both ways
// and the VNC password asked for in the page. The password is handed to
// noVNC only; nothing here sends it anywhere else or keeps it.
import RFB from "./novnc/core/rfb.js";

const root = document.getElementById("vnc");
const screen = document.getElementById("vnc-screen");
const stateBox = document.getElementById("vnc-state");
const stateText = document.getElementById("vnc-state-text");
const cad = document.getElementById("vnc-cad");
const reconnect = document.getElementById("vnc-reconnect");
const credentials = document.getElementById("vnc-credentials");
const usernameField = document.getElementById("vnc-username-field");
const username = document.getElementById("vnc-username");
const password = document.getElementById("vnc-password");
const clipboard = document.getElementById("vnc-clipboard-text");
const clipboardSend = document.getElementById("vnc-clipboard-send");

let rfb = null;

// setState shows state (connecting, connected, disconnected) with the text
// of key among the state element's data attributes.
function setState(state, key) {
  stateBox.dataset.state = state;
  stateText.textContent = stateBox.dataset[key] || stateBox.dataset[state];
  cad.disabled = state !== "connected";
  reconnect.hidden = state !== "disconnected";
}

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.socket;
  let connected = false;
  let authFailed = false;
  setState("connecting");
  rfb = new RFB(screen, url, {wsProtocols: ["binary"]});
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.background = "#282c34";
  rfb.addEventListener("connect", () => {
    connected = true;
    credentials.hidden = true;
    setState("connected");
  });
  rfb.addEventListener("disconnect", (ev) => {
    credentials.hidden = true;
    password.value = "";
    rfb = null;
    let key = "lost";
    if (authFailed) {
      key = "authFailed";
    } else if (!connected) {
      key = "failed";
    } else if (ev.detail.clean) {
      key = "disconnected";
    }
    setState("disconnected", key);
  });
  rfb.addEventListener("securityfailure", () => {
    authFailed = true;
  });
  rfb.addEventListener("credentialsrequired", (ev) => {
    const types = ev.detail.types || ["password"];
    usernameField.hidden = !types.includes("username");
    credentials.hidden = false;
    (types.includes("username") ? username : password).focus();
  });
  rfb.addEventListener("clipboard", (ev) => {
    clipboard.value = ev.detail.text;
  });
}

credentials.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!rfb) {
    return;
  }
  const creds = {password: password.value};
  if (!usernameField.hidden) {
    creds.username = username.value;
  }
  password.value = "";
  credentials.hidden = true;
  rfb.sendCredentials(creds);
  rfb.focus();
});

cad.addEventListener("click", () => {
  if (rfb) {
    rfb.sendCtrlAltDel();
    rfb.focus();
  }
});

clipboardSend.addEventListener("click", () => {
  if (rfb) {
    rfb.clipboardPasteFrom(clipboard.value);
  }
});

reconnect.addEventListener("click", connect);

connect();
