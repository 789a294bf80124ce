// The idle-timeout warning (R-AUTH-5). Without JavaScript the page still states when the session
// ends and offers "continue"; with it, a dialog opens shortly before the end. Checking the status
// is a background request: it never extends the session. Other tabs may have extended it, so the
// end time is read again before warning.
(function () {
  "use strict";
  var body = document.body;
  var dialog = document.getElementById("timeout-warning");
  if (!dialog || !body.dataset.sessionWarnAt) { return; }
  var warnAt = Number(body.dataset.sessionWarnAt);
  var endsAt = Number(body.dataset.sessionEndsAt);
  function schedule() {
    var wait = Math.max(0, warnAt - Date.now());
    window.setTimeout(check, Math.min(wait, 2147483000));
  }
  function check() {
    fetch("/session/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (!s.active) { window.location.assign("/"); return; }
        if (s.ends_at_ms > endsAt) {
          warnAt += s.ends_at_ms - endsAt; endsAt = s.ends_at_ms; schedule(); return;
        }
        if (typeof dialog.showModal === "function" && !dialog.open) { dialog.showModal(); }
        window.setTimeout(function () { window.location.assign("/"); }, Math.max(0, endsAt - Date.now()) + 1000);
      })
      .catch(function () { if (typeof dialog.showModal === "function" && !dialog.open) { dialog.showModal(); } });
  }
  schedule();
}());
