/* poolwarden panel: refresh the numbers of the current page every 5 s.
 *
 * The page's <main> names its JSON endpoint (data-refresh-url) and its layout (data-layout).
 * Elements carry where their value lives in that JSON (data-path, a JSON array of keys) and how
 * to print it (data-format); the formats mirror panel/hosts/formatting.py. Bars (data-bar) take
 * their width from a percent, coloured words (data-state) swap their state-* class. When the
 * layout changes (a new mount, pool or host) the page reloads to render the new rows.
 */
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var DASH = "\u2014";
  var BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  var HASHRATE_UNITS = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  var SI_UNITS = ["", "k", "M", "G", "T", "P", "E"];

  function scaled(value, units, base) {
    var index = 0;
    while (Math.abs(value) >= base && index < units.length - 1) {
      value /= base;
      index += 1;
    }
    return [value, units[index]];
  }

  function thousands(value, decimals) {
    return value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }

  var FORMATS = {
    bytes: function (v) {
      var s = scaled(v, BYTE_UNITS, 1024);
      return s[1] === "B" ? s[0].toFixed(0) + " B" : s[0].toFixed(1) + " " + s[1];
    },
    hashrate: function (v) {
      var s = scaled(v, HASHRATE_UNITS, 1000);
      return s[1] === "H/s" ? s[0].toFixed(0) + " H/s" : s[0].toFixed(2) + " " + s[1];
    },
    si: function (v) {
      var s = scaled(v, SI_UNITS, 1000);
      return s[1] === "" ? s[0].toFixed(0) : s[0].toFixed(2) + " " + s[1];
    },
    percent: function (v) { return v.toFixed(1) + " %"; },
    count: function (v) { return thousands(v, Number.isInteger(v) ? 0 : 2); },
    decimal: function (v) { return v.toFixed(2); },
    age: function (v) {
      var s = Math.max(0, Math.round(v));
      if (s < 120) return s + " s ago";
      if (s < 7200) return Math.floor(s / 60) + " min ago";
      if (s < 172800) return Math.floor(s / 3600) + " h ago";
      return Math.floor(s / 86400) + " d ago";
    },
    rate: function (v) { return FORMATS.bytes(v) + "/s"; },
    ratio: function (v) { return (v * 100).toFixed(1) + " %"; },
    seconds: function (v) {
      var s = Math.abs(v);
      if (s < 120) return v.toFixed(s < 10 ? 1 : 0) + " s";
      if (s < 7200) return (v / 60).toFixed(0) + " min";
      if (s < 172800) return (v / 3600).toFixed(1) + " h";
      return (v / 86400).toFixed(1) + " d";
    },
    text: function (v) { return String(v); }
  };

  function format(value, kind) {
    if (value === null || value === undefined) return kind === "age" ? "never" : DASH;
    return (FORMATS[kind] || FORMATS.text)(value);
  }

  window.poolwardenFormat = format;  // for charts.js: graphs print values as the page does

  function lookup(data, pathJson) {
    return JSON.parse(pathJson).reduce(function (obj, key) {
      return obj === null || obj === undefined ? undefined : obj[key];
    }, data);
  }

  function setBar(el, percent) {
    var pct = Math.max(0, Math.min(100, Number(percent) || 0));
    el.style.width = pct + "%";
  }

  function setState(el, value) {
    Array.prototype.slice.call(el.classList).forEach(function (cls) {
      if (cls.indexOf("state-") === 0) el.classList.remove(cls);
    });
    el.classList.add("state-" + (value === null || value === undefined ? "unknown" : value));
  }

  function apply(root, data) {
    root.querySelectorAll("[data-path]").forEach(function (el) {
      var text = format(lookup(data, el.dataset.path), el.dataset.format || "text");
      if (el.textContent !== text) {
        el.textContent = text;
        el.classList.remove("changed");
        void el.offsetWidth; // restart the highlight animation
        el.classList.add("changed");
      }
    });
    root.querySelectorAll("[data-bar]").forEach(function (el) { setBar(el, lookup(data, el.dataset.bar)); });
    root.querySelectorAll("[data-state]").forEach(function (el) { setState(el, lookup(data, el.dataset.state)); });
    root.querySelectorAll("[data-show-if]").forEach(function (el) {
      el.hidden = lookup(data, el.dataset.showIf) !== el.dataset.showValue;
    });
  }

  function showStatus(text, failed) {
    var el = document.getElementById("refresh-status");
    if (!el) return;
    el.hidden = false;
    el.textContent = text;
    el.classList.toggle("failed", failed);
  }

  // GET a panel JSON endpoint; an error answer rejects with its message.
  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          // The session ended (idle, 12 h, or "log out everywhere"): sign in again and come back here.
          window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
          throw new Error("signed out");
        }
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || response.statusText);
          return body;
        });
      });
  }
  window.poolwardenGetJSON = getJSON;  // for charts.js

  function refresh(root) {
    if (document.hidden) return;
    getJSON(root.dataset.refreshUrl)
      .then(function (data) {
        if (data.layout !== undefined && data.layout !== root.dataset.layout) {
          window.location.reload();
          return;
        }
        apply(root, data);
        showStatus("updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function (error) {
        showStatus("refresh failed: " + error.message + " (retrying)", true);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-bar][data-value]").forEach(function (el) { setBar(el, el.dataset.value); });
    var root = document.querySelector("main[data-refresh-url]");
    if (!root) return;
    window.setInterval(function () { refresh(root); }, REFRESH_MS);
  });
})();
