// task-job's page: plain forms do every action; this script only adds a
// confirmation before kill/retry and live updates over Server-Sent Events.
"use strict";

document.addEventListener("submit", function (ev) {
  var msg = ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});

function stateSpan(state) {
  var s = document.createElement("span");
  s.className = "state st-" + state;
  s.textContent = state;
  return s;
}

function setState(el, state) {
  if (!el) return;
  el.textContent = "";
  el.appendChild(stateSpan(state));
}

// The task page: the output, live, resuming where it stopped after a cut
// (the browser sends Last-Event-ID); "pause" holds lines back, and is kept
// across reloads of the page.
function taskPage(log) {
  var tail = parseInt(log.getAttribute("data-tail"), 10) || 5000;
  var status = document.getElementById("log-status");
  var pauseBtn = document.getElementById("pause");
  var key = "taskjob-pause:" + log.getAttribute("data-src");
  var paused = sessionStorage.getItem(key) === "1";
  var held = [];
  pauseBtn.hidden = false;

  function label() {
    pauseBtn.textContent = paused ? "resume" : "pause";
  }
  function add(cls, text) {
    var line = document.createElement("span");
    line.className = "line " + cls;
    line.textContent = text + "\n";
    log.appendChild(line);
    while (log.childNodes.length > tail) log.removeChild(log.firstChild);
  }
  function flush() {
    held.forEach(function (h) { add(h[0], h[1]); });
    held = [];
    log.scrollTop = log.scrollHeight;
  }
  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    sessionStorage.setItem(key, paused ? "1" : "0");
    label();
    if (!paused) flush();
  });
  label();

  var es = new EventSource(log.getAttribute("data-src"));
  function line(cls) {
    return function (ev) {
      var m = JSON.parse(ev.data);
      var st = document.querySelector("#task-state .state");
      if (st && st.textContent === "queued") setState(st.parentNode, "running");
      held.push([cls, m.data]);
      if (!paused) flush();
    };
  }
  es.addEventListener("stdout", line("stdout"));
  es.addEventListener("stderr", line("stderr"));
  es.addEventListener("done", function (ev) {
    es.close();
    var m = JSON.parse(ev.data);
    held.push(["done", "[" + m.status + "] " + (m.reason || m.data)]);
    flush();
    setState(document.getElementById("task-state"), m.status);
    var kill = document.getElementById("kill-button");
    if (kill) kill.form.hidden = true;
    status.textContent = "ended";
  });
  es.addEventListener("open", function () { status.textContent = "live"; });
  es.addEventListener("error", function () {
    status.textContent = es.readyState === EventSource.CLOSED ? "ended" : "reconnecting…";
  });
}

// The task list: new tasks and state changes as they happen.
function taskList(table) {
  var body = table.tBodies[0];
  var es = new EventSource("/api/v1/events");
  es.addEventListener("task", function (ev) {
    var t = JSON.parse(ev.data);
    var row = body.querySelector('tr[data-id="' + CSS.escape(t.id) + '"]');
    if (!row) {
      row = document.createElement("tr");
      row.setAttribute("data-id", t.id);
      var cells = [];
      for (var i = 0; i < 8; i++) cells.push(row.insertCell());
      var a = document.createElement("a");
      a.href = "/tasks/" + encodeURIComponent(t.id);
      a.textContent = t.id;
      cells[0].appendChild(a);
      cells[1].className = "c-state";
      cells[2].textContent = t.tube || "";
      cells[3].className = "mono";
      cells[3].textContent = [t.cmdline].concat(t.cmd_args || []).join(" ");
      cells[4].textContent = t.executor || "";
      cells[5].textContent = t.claimed || "";
      cells[7].className = "c-reason";
      body.insertBefore(row, body.firstChild);
    }
    setState(row.querySelector(".c-state"), t.state);
    if (t.executor) row.cells[4].textContent = t.executor;
    if (t.rule) row.cells[6].textContent = t.rule;
    if (t.done) {
      row.querySelector(".c-reason").textContent = t.done.reason || "";
    }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var log = document.getElementById("log");
  if (log) taskPage(log);
  var table = document.getElementById("tasks");
  if (table && table.getAttribute("data-live") === "1") taskList(table);
});
