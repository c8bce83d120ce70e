// onestack dashboard: live instance status, image upload with progress, confirmations.
// No framework, no build step; every request carries the page's CSRF token.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf || "";

  // Ask before destructive actions.
  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
    }
  });

  // Live status: cells with data-live="<server id>" are refreshed until they settle.
  const live = Array.from(document.querySelectorAll("[data-live]"));
  const settled = new Set(["ACTIVE", "SHUTOFF", "ERROR", "PAUSED", "SUSPENDED", "SHELVED",
                           "SHELVED_OFFLOADED", "DELETED", "RESCUE", "VERIFY_RESIZE"]);
  function poll() {
    const pending = live.filter(function (el) { return !el.dataset.done; });
    if (!pending.length) { return; }
    const ids = Array.from(new Set(pending.map(function (el) { return el.dataset.live; })));
    fetch("/project/instances/status?ids=" + encodeURIComponent(ids.join(",")),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (doc) {
        pending.forEach(function (el) {
          const s = doc[el.dataset.live];
          if (!s) { return; }
          el.textContent = s.status + (s.task ? " (" + s.task + ")" : "");
          el.className = "status s-" + String(s.status).toLowerCase();
          if (s.done) { el.dataset.done = "1"; }
          const cellOf = el.closest("td");
          if (cellOf && cellOf.nextElementSibling) {
            cellOf.nextElementSibling.textContent = s.task || "-";
          }
          const row = el.closest("tr");
          if (row && s.addresses) {
            const cells = row.querySelectorAll("td");
            if (cells.length > 2 && cells[2].textContent !== s.addresses) {
              cells[2].textContent = s.addresses;
            }
          }
        });
      })
      .catch(function () {})
      .finally(function () { setTimeout(poll, 1500); });
  }
  live.forEach(function (el) {
    if (settled.has(el.textContent.trim())) { el.dataset.done = "1"; }
  });
  if (live.length) { setTimeout(poll, 1000); }

  // Image upload: create the image, then send the file with a progress bar.
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const file = form.querySelector("input[type=file]").files[0];
      const bar = form.querySelector("progress");
      const button = form.querySelector("button[type=submit]");
      if (!file) { return; }
      const fields = new URLSearchParams();
      new FormData(form).forEach(function (v, k) {
        if (typeof v === "string") { fields.append(k, v); }
      });
      button.disabled = true;
      fetch(form.action, {method: "POST", body: fields, credentials: "same-origin",
                          headers: {"X-CSRFToken": csrf}})
        .then(function (r) { return r.json().then(function (d) { return [r.ok, d]; }); })
        .then(function (res) {
          if (!res[0]) { throw new Error(res[1].error || "the image was not created"); }
          bar.hidden = false;
          const xhr = new XMLHttpRequest();
          xhr.open("PUT", res[1].upload);
          xhr.setRequestHeader("X-CSRFToken", csrf);
          xhr.setRequestHeader("Content-Type", "application/octet-stream");
          xhr.upload.onprogress = function (e) {
            if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
          };
          xhr.onload = function () {
            bar.value = 100;
            window.location.reload();
          };
          xhr.onerror = function () { button.disabled = false; alert("Upload failed."); };
          xhr.send(file);
        })
        .catch(function (err) { button.disabled = false; alert(err.message); });
    });
  });
})();
