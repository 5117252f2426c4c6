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

// el makes an element whose text is text, set as text, never as HTML.
function el(tag, text, cls) {
  var e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// Live task state: ps:report's document at each change (server-sent
// events), drawn with text nodes only, as the page draws it.
document.querySelectorAll("[data-ps]").forEach(function (box) {
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
  // Another release serving (a push, a rollback, a config change made
  // elsewhere): the page's releases and its current release are drawn
  // again from the page as the server renders it now.
  var serving = box.dataset.release;
  function releasesChanged() {
    fetch(location.pathname, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        ["releases", "current"].forEach(function (id) {
          var now = page.getElementById(id), old = document.getElementById(id);
          if (now && old) old.replaceWith(document.adoptNode(now));
        });
      })
      .catch(function () { /* the next change tries again */ });
  }
  var es = new EventSource(box.dataset.ps);
  es.onmessage = function (e) {
    var doc;
    try { doc = JSON.parse(e.data); } catch (err) { return; /* a partial line: the next document redraws */ }
    draw(doc);
    if (String(doc.release) !== serving) {
      serving = String(doc.release);
      releasesChanged();
    }
  };
  es.addEventListener("end", function () { es.close(); });
});

// Live builds: builds:list's list each time a build starts or ends
// (server-sent events), drawn with text nodes only, as the page draws it.
document.querySelectorAll("[data-builds]").forEach(function (box) {
  function when(s) {
    var d = new Date(s);
    return isNaN(d) || d.getUTCFullYear() < 2 ? "-" : d.toISOString().slice(0, 19).replace("T", " ");
  }
  function draw(builds) {
    box.textContent = "";
    if (builds.length === 0) {
      box.appendChild(el("p", "No builds yet."));
      return;
    }
    var table = el("table"), head = el("thead"), tr = el("tr"), body = el("tbody");
    ["ID", "Status", "Kind", "Commit", "Started", "Duration", "Release"].forEach(function (t) { tr.appendChild(el("th", t)); });
    head.appendChild(tr);
    table.appendChild(head);
    builds.forEach(function (b) {
      var row = el("tr"), id = el("td"), a = el("a", String(b.id)), commit = el("td");
      a.href = "/apps/" + encodeURIComponent(box.dataset.app) + "/builds/" + b.id;
      id.appendChild(a);
      row.appendChild(id);
      row.appendChild(el("td", b.status));
      row.appendChild(el("td", b.kind));
      commit.appendChild(el("code", (b.commit || "").replace(/^sha256:/, "").slice(0, 7)));
      row.appendChild(commit);
      row.appendChild(el("td", when(b.started_at)));
      row.appendChild(el("td", b.duration_seconds.toFixed(1) + " s"));
      row.appendChild(el("td", b.release ? "v" + b.release : ""));
      body.appendChild(row);
    });
    table.appendChild(body);
    box.appendChild(table);
  }
  var es = new EventSource(box.dataset.builds);
  es.onmessage = function (e) {
    try { draw(JSON.parse(e.data)); } catch (err) { /* a partial line: the next list redraws */ }
  };
  es.addEventListener("end", function () { es.close(); });
});

// A running build's output as it is written (server-sent events of
// builds:output --follow, which start from the beginning of the log, so
// they replace what the page was drawn with), added as text, never as
// HTML; then its status, read again when the stream ends.
document.querySelectorAll("pre[data-follow]").forEach(function (pre) {
  var fresh = true;
  var es = new EventSource(pre.dataset.follow);
  es.onopen = function () { fresh = true; }; // a reconnection sends the log again
  es.onmessage = function (e) {
    if (fresh) { pre.textContent = ""; fresh = false; }
    pre.appendChild(document.createTextNode(e.data + "\n"));
    pre.scrollTop = pre.scrollHeight;
  };
  es.addEventListener("end", function () {
    es.close();
    var status = document.getElementById("build-status");
    fetch(pre.dataset.info, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (b) {
        status.textContent = b.status;
        document.getElementById("build-duration").textContent = b.duration_seconds.toFixed(1) + " s";
        if (b.release) document.getElementById("build-release").textContent = " · release v" + b.release;
        if (b.error) {
          var err = document.getElementById("build-error");
          err.textContent = b.error;
          err.hidden = false;
        }
      })
      .catch(function () { status.textContent = "ended (reload for its status)"; });
  });
});
