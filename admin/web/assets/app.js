// The reflector's web UI script: live device status and copy buttons. The
// pages work without it; it only keeps them current and saves typing.
"use strict";

// Live status: a table with data-live polls that URL with the ids of its
// rows and updates their dots and cells, so a device going online or
// offline shows without a reload.
const livePeriod = 3000;

function liveTable(table) {
  const rows = new Map();
  for (const tr of table.querySelectorAll("tr[data-device]")) {
    rows.set(tr.dataset.device, tr);
  }
  if (rows.size === 0) {
    return;
  }
  const url = table.dataset.live + "?ids=" + encodeURIComponent([...rows.keys()].join(","));
  const update = async () => {
    try {
      const resp = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (!resp.ok) {
        return;
      }
      for (const d of await resp.json()) {
        const tr = rows.get(d.id);
        if (!tr) {
          continue;
        }
        const dot = tr.querySelector(".dot");
        if (dot) {
          dot.classList.toggle("on", d.online);
          dot.setAttribute("aria-label", d.online ? "online" : "offline");
        }
        for (const field of ["agent", "since", "streams"]) {
          const cell = tr.querySelector('[data-field="' + field + '"]');
          if (cell && cell.textContent !== d[field]) {
            cell.textContent = d[field];
          }
        }
      }
    } catch (e) {
      // Offline or signed out: try again at the next tick.
    }
  };
  setInterval(update, livePeriod);
}

// Copy buttons: a button with data-copy copies the text of the element of
// that id.
function copyButton(button) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) {
      return;
    }
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    } catch (e) {
      // No clipboard (an insecure context): the text stays selectable.
    }
  });
}

// Confirmations: a form with data-confirm asks before it is sent.
function confirmForm(form) {
  form.addEventListener("submit", (ev) => {
    if (!window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table[data-live]").forEach(liveTable);
  document.querySelectorAll("button[data-copy]").forEach(copyButton);
  document.querySelectorAll("form[data-confirm]").forEach(confirmForm);
});
