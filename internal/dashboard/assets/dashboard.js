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

// Live task state: ps:report's document at each change (server-sent
// events), drawn with text nodes only, as the page draws it.
document.querySelectorAll("[data-ps]").forEach(function (box) {
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function draw(doc) {
    var procs = doc.processes || [];
    box.textContent = "";
    if (procs.length === 0) {
      box.appendChild(el("p", "No processes run" + (doc.deployed ? "." : ": the app has not been deployed.")));
      return;
    }
    procs.forEach(function (p) {
      var h = el("h3", p.process + " ");
      h.appendChild(el("span", p.running + "/" + p.desired + " running", "count"));
      h.appendChild(document.createTextNode(", release v" + p.release));
      box.appendChild(h);
      var table = el("table"), head = el("thead"), tr = el("tr"), body = el("tbody");
      ["Task", "State", "Node"].forEach(function (t) { tr.appendChild(el("th", t)); });
      head.appendChild(tr);
      table.appendChild(head);
      (p.tasks || []).forEach(function (t) {
        var row = el("tr");
        row.appendChild(el("td", String(t.slot)));
        row.appendChild(el("td", t.state + (t.error ? " (" + t.error + ")" : "")));
        row.appendChild(el("td", t.node || "", "node"));
        body.appendChild(row);
      });
      table.appendChild(body);
      box.appendChild(table);
    });
  }
  var es = new EventSource(box.dataset.ps);
  es.onmessage = function (e) {
    try { draw(JSON.parse(e.data)); } catch (err) { /* a partial line: the next document redraws */ }
  };
  es.addEventListener("end", function () { es.close(); });
});
