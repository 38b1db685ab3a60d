// wdtpipe console: keeps a page's live section fresh. One server-sent-events stream per
// page (typed by view, numbered by snapshot); polling when the stream fails or the browser
// has no EventSource; nothing at all while the tab is hidden.
(function () {
  "use strict";
  var zh = document.body.dataset.lang === "zh";
  var words = {
    live: zh ? "实时" : "live",
    polling: zh ? "轮询" : "polling",
    hidden: zh ? "已暂停（页面隐藏）" : "paused (tab hidden)"
  };

  function selectAll() {
    var table = document.querySelector("table.letters");
    if (!table) return;
    var head = table.querySelector("thead th");
    if (!head) return;
    var box = document.createElement("input");
    box.type = "checkbox";
    box.id = "select-page";
    box.setAttribute("aria-label", zh ? "全选本页" : "select this page");
    box.addEventListener("change", function () {
      table.querySelectorAll("tbody input[name=key]").forEach(function (b) {
        b.checked = box.checked;
      });
    });
    head.appendChild(box);
  }

  function live() {
    var section = document.getElementById("live");
    var state = document.getElementById("live-state");
    if (!section || !state) return;
    var query = "view=" + encodeURIComponent(section.dataset.view || "overview") +
      "&shop=" + encodeURIComponent(section.dataset.shop || "");
    var every = parseInt(state.dataset.refreshMs, 10) || 2000;
    var source = null;
    var timer = null;
    var lastSeq = 0;

    function show(update, how) {
      if (update.seq < lastSeq) return;
      lastSeq = update.seq;
      section.innerHTML = update.html;
      state.textContent = how + " #" + update.seq;
      state.className = how === words.live ? "ok" : "";
    }

    function poll() {
      fetch("/api/live?" + query, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (u) { show(u, words.polling); })
        .catch(function () {});
    }

    function startPolling() {
      if (timer) return;
      poll();
      timer = setInterval(poll, Math.max(every, 1000));
    }

    function stop() {
      if (source) { source.close(); source = null; }
      if (timer) { clearInterval(timer); timer = null; }
    }

    function start() {
      stop();
      if (!window.EventSource) { startPolling(); return; }
      source = new EventSource("/events?" + query);
      var view = section.dataset.view || "overview";
      source.addEventListener(view, function (e) {
        show(JSON.parse(e.data), words.live);
      });
      source.onerror = function () {
        // The stream failed (a proxy that buffers, the console restarting): poll, and try
        // the stream again in a while.
        if (source) { source.close(); source = null; }
        startPolling();
        setTimeout(function () {
          if (!document.hidden && !source) { stop(); start(); }
        }, 30000);
      };
    }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        stop();
        state.textContent = words.hidden;
        state.className = "";
      } else {
        start();
      }
    });
    if (!document.hidden) start();
  }

  selectAll();
  live();
})();
