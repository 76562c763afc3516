/* poolwarden panel: live maintenance jobs (no inline scripts: the CSP forbids them).
 *
 * Host page (<main data-maint-url>): every 2 s, read the host's maintenance state and redraw the
 * "Current jobs" list (queued, running, just finished, with their output), the worker state, and
 * the status of history rows already on the page.
 * Job page (<main data-job-url>): while the job is queued or running, follow its status and output;
 * when it ends, reload once so the page shows the full result.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var ACTIVE = { queued: true, running: true };
  var TAIL_LINES = 40;

  function getJSON(url) {
    return window.poolwardenGetJSON(url);
  }

  function fmt(value, kind) {
    return window.poolwardenFormat ? window.poolwardenFormat(value, kind) : String(value);
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace("Z", "") : "\u2014";
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function statusPill(status) {
    var pill = el("span", "pill job-status status-" + status, status);
    pill.setAttribute("data-job-status", "");
    return pill;
  }

  function setPill(pill, status) {
    pill.className = "pill job-status status-" + status;
    pill.textContent = status;
  }

  function message(job) {
    if (!ACTIVE[job.status] && job.status !== "succeeded" && job.error) return job.error;
    return job.summary || "";
  }

  function jobLine(job, jobBase) {
    var item = el("article", "job-line status-" + job.status);
    item.setAttribute("data-job-id", job.id);
    var head = el("div", "job-line-head");
    var link = el("a");
    link.href = jobBase.replace("JOB", job.id);
    link.appendChild(el("b", null, job.title));
    head.appendChild(link);
    head.appendChild(statusPill(job.status));
    var meta = "by " + job.requested_by + " \u00b7 " + when(job.requested_at);
    if (job.duration_seconds !== null && job.duration_seconds !== undefined) {
      meta += " \u00b7 " + fmt(job.duration_seconds, "seconds");
    }
    head.appendChild(el("span", "muted", meta));
    var text = message(job);
    if (text) {
      var failed = job.status !== "succeeded" && !ACTIVE[job.status];
      head.appendChild(el("span", "job-message" + (failed ? " error" : ""), text));
    }
    item.appendChild(head);
    var lines = job.progress || [];
    if (lines.length) {
      var pre = el("pre", "progress-lines", lines.slice(-TAIL_LINES).join("\n"));
      item.appendChild(pre);
    } else if (job.status === "queued") {
      item.appendChild(el("p", "muted small empty-line", "waiting for the host's maintenance worker\u2026"));
    }
    return item;
  }

  function renderCurrent(root, data) {
    var list = document.getElementById("current-list");
    if (!list) return;
    var signature = JSON.stringify(data.jobs);
    if (list.dataset.signature === signature) return;
    list.dataset.signature = signature;
    var scrolls = {};
    list.querySelectorAll("[data-job-id] pre").forEach(function (pre) {
      scrolls[pre.parentNode.getAttribute("data-job-id")] = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    });
    while (list.firstChild) list.removeChild(list.firstChild);
    if (!data.jobs.length) {
      list.appendChild(el("p", "muted empty-line", "No job is queued or running on " + data.host + "."));
      return;
    }
    data.jobs.forEach(function (job) {
      var line = jobLine(job, root.dataset.jobBase);
      list.appendChild(line);
      var pre = line.querySelector("pre");
      if (pre && scrolls[job.id] !== false) pre.scrollTop = pre.scrollHeight;
    });
  }

  function renderWorker(data) {
    var pill = document.getElementById("worker-state");
    var w = data.worker;
    if (pill) {
      pill.className = "pill " + (w.online ? "state-ok" : "state-crit");
      pill.textContent = w.online ? "worker online" + (w.busy ? " \u00b7 busy" : "") : "worker offline";
    }
    var seen = document.getElementById("worker-seen");
    if (seen) {
      var age = w.last_seen ? fmt((Date.now() - Date.parse(w.last_seen)) / 1000, "age") : "never";
      seen.textContent = w.online
        ? w.workers + " worker" + (w.workers === 1 ? "" : "s") + ", last heartbeat " + age
        : "last seen " + age;
    }
    var notice = document.getElementById("worker-notice");
    if (notice) notice.hidden = w.online || !data.key;
  }

  function renderHistory(data) {
    data.jobs.forEach(function (job) {
      var row = document.querySelector("tr[data-job-id='" + job.id + "']");
      if (!row) return;
      var pill = row.querySelector("[data-job-status]");
      if (pill && pill.textContent !== job.status) setPill(pill, job.status);
      var duration = row.querySelector("[data-job-duration]");
      if (duration) duration.textContent = fmt(job.duration_seconds, "seconds");
      var result = row.querySelector("[data-job-result]");
      if (result) result.textContent = message(job);
      if (!ACTIVE[job.status] || job.status === "running") {
        var cancel = row.querySelector("[data-cancel-form]");
        if (cancel) cancel.remove();
      }
    });
  }

  function status(text, failed) {
    var node = document.getElementById("refresh-status");
    if (!node) return;
    node.hidden = false;
    node.textContent = text;
    node.classList.toggle("failed", failed);
  }

  function followHost(root) {
    function poll() {
      if (document.hidden) return;
      getJSON(root.dataset.maintUrl).then(function (data) {
        renderCurrent(root, data);
        renderWorker(data);
        renderHistory(data);
        status("updated " + new Date().toLocaleTimeString(), false);
      }).catch(function (error) {
        status("refresh failed: " + error.message + " (retrying)", true);
      });
    }
    poll();
    window.setInterval(poll, POLL_MS);
  }

  function followJob(root) {
    var timer = null;
    function setField(name, value) {
      var node = document.querySelector("[data-field='" + name + "']");
      if (!node) return;
      if (name === "error") {
        node.hidden = !value;
        node.textContent = value || "";
      } else if (node.dataset.format) {
        node.textContent = fmt(value, node.dataset.format);
      } else if (name.slice(-3) === "_at") {
        node.textContent = when(value);
      } else if (value) {
        node.textContent = value;
      }
    }
    function poll() {
      getJSON(root.dataset.jobUrl).then(function (job) {
        var pill = document.querySelector("#job-status [data-job-status]");
        if (pill && pill.textContent !== job.status) setPill(pill, job.status);
        ["started_at", "finished_at", "duration_seconds", "summary", "error"].forEach(function (name) {
          setField(name, job[name]);
        });
        var out = document.getElementById("job-output");
        var lines = (job.progress || []).join("\n");
        if (out && out.textContent !== lines) {
          var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
          out.textContent = lines;
          if (atEnd) out.scrollTop = out.scrollHeight;
          var none = document.getElementById("no-output");
          if (none && lines) none.hidden = true;
        }
        if (job.status !== "queued") {
          var cancel = document.getElementById("cancel-form");
          if (cancel) cancel.remove();
        }
        if (!ACTIVE[job.status]) {
          window.clearInterval(timer);
          window.location.reload();
        }
        status("updated " + new Date().toLocaleTimeString(), false);
      }).catch(function (error) {
        status("refresh failed: " + error.message + " (retrying)", true);
      });
    }
    timer = window.setInterval(poll, POLL_MS);
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var host = document.querySelector("main[data-maint-url]");
    if (host) followHost(host);
    var job = document.querySelector("main[data-job-url]");
    if (job) followJob(job);
  });
})();
