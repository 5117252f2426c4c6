// Live logs: the API's server-sent events (the session cookie signs the
// request in), each line added as text, never as HTML.
"use strict";
document.querySelectorAll("[data-logs]").forEach(function (box) {
  var lines = box.querySelector("pre");
  var state = box.querySelector(".logstate");
  var es = new EventSource(box.dataset.logs);
  es.onopen = function () { state.textContent = "following"; };
  es.onmessage = function (e) {
    lines.appendChild(document.createTextNode(e.data + "\n"));
    while (lines.childNodes.length > 500) lines.removeChild(lines.firstChild);
    lines.scrollTop = lines.scrollHeight;
  };
  es.addEventListener("end", function () { state.textContent = "ended"; es.close(); });
  es.onerror = function () {
    state.textContent = es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  };
});
