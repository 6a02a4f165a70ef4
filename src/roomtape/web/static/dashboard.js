// roomtape dashboard: live statuses, actions through the API, and recording playback with an
// autoscrolling transcript. No framework; every call goes to /dashboard/api/…, a same-origin proxy of the
// public API that adds the signed-in app's token (kept server-side in an HttpOnly cookie).
(() => {
  "use strict";

  const API = "/dashboard/api/";
  const POLL_MS = 2000;

  // --- helpers -------------------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: "application/json", "X-Roomtape-Dashboard": "1" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    if (response.status === 401) {
      location.assign("/dashboard/signin?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("signed out");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? data.error.message : "HTTP " + response.status;
      throw new Error(message);
    }
    return data;
  }

  function announce(text, where) {
    const box = where || document.getElementById("action-status") || document.getElementById("announcer");
    if (box) box.textContent = text;
  }

  function pad(n, width) {
    return String(n).padStart(width, "0");
  }

  /** mm:ss.mmm, the precise time shown on hover. */
  function clock(seconds) {
    const ms = Math.max(0, Math.round(seconds * 1000));
    return pad(Math.floor(ms / 60000), 2) + ":" + pad(Math.floor(ms / 1000) % 60, 2) + "." + pad(ms % 1000, 3);
  }

  /** m:ss, the short time shown in the list. */
  function short(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + pad(s % 60, 2);
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    let value = Number(bytes);
    for (const unit of ["B", "kB", "MB", "GB"]) {
      if (value < 1000 || unit === "GB") return unit === "B" ? value.toFixed(0) + " B" : value.toFixed(1) + " " + unit;
      value /= 1000;
    }
    return String(bytes);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const total = Math.max(0, Math.round(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    return h ? h + ":" + pad(m, 2) + ":" + pad(s, 2) : m + ":" + pad(s, 2);
  }

  const FORMATS = { size, duration, text: (v) => (v === null || v === undefined ? "—" : String(v)) };

  // --- live statuses ---------------------------------------------------------------------------------------
  function applyStatus(el, data) {
    for (const field of el.querySelectorAll("[data-field]")) {
      const key = field.dataset.field;
      if (!(key in data)) continue;
      const value = FORMATS[field.dataset.format || "text"](data[key]);
      if (field.textContent !== value) field.textContent = value;
      if (key === "status") field.className = "status status-" + String(data.status).toLowerCase();
    }
    // Elements elsewhere on the page that show or hide with the status (the recording page's actions).
    if (el.id === "recording-status") {
      for (const other of document.querySelectorAll("[data-when]")) {
        other.hidden = !other.dataset.when.split(" ").includes(data.status);
      }
      document.querySelectorAll(".meta [data-field]").forEach((field) => {
        const key = field.dataset.field;
        if (key in data) field.textContent = FORMATS[field.dataset.format || "text"](data[key]);
      });
    }
  }

  function startPolling() {
    const watched = () => [...document.querySelectorAll("[data-poll]")];
    if (!watched().length) return;
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        for (const el of watched()) {
          let answer;
          try {
            answer = await api("GET", el.dataset.poll);
          } catch (err) {
            continue;
          }
          const data = answer && answer.data ? answer.data : null;
          if (!data) continue;
          const before = el.dataset.status || (el.querySelector("[data-field=status]") || {}).textContent;
          applyStatus(el, data);
          el.dataset.status = data.status;
          if (before && before.trim() !== data.status) announce("Status: " + data.status, document.getElementById("announcer"));
          const final = (el.dataset.final || "").split(" ");
          if (final.includes(data.status)) {
            el.removeAttribute("data-poll");
            if (el.dataset.onFinal === "reload" && before && before.trim() !== data.status) location.reload();
          }
        }
      } finally {
        busy = false;
      }
    };
    setInterval(tick, POLL_MS);
  }

  // --- actions ---------------------------------------------------------------------------------------------
  const afterHooks = {}; // name → function(answer), set by the page's setup

  function after(how, answer) {
    if (how && afterHooks[how]) return afterHooks[how](answer);
    if (!how || how === "refresh") {
      const status = document.getElementById("recording-status");
      if (status && answer && answer.data) applyStatus(status, answer.data);
      if (status && answer && answer.data && !status.hasAttribute("data-poll")) {
        status.setAttribute("data-poll", "kit/recordings/" + answer.data.id);
      }
      return;
    }
    if (how === "reload") return location.reload();
    if (how === "open-recording" && answer && answer.data) {
      return location.assign("/dashboard/recordings/" + encodeURIComponent(answer.data.id));
    }
    if (how.startsWith("goto:")) return location.assign(how.slice(5));
  }

  async function runAction(control, method, path, body) {
    if (control.dataset.confirm && !window.confirm(control.dataset.confirm)) return;
    const label = control.textContent.trim() || "Action";
    control.disabled = true;
    control.setAttribute("aria-busy", "true");
    announce(label + "…");
    try {
      const answer = await api(method, path, body);
      announce(label + ": done.");
      after(control.dataset.after, answer);
    } catch (err) {
      announce(label + " failed: " + err.message);
    } finally {
      control.disabled = false;
      control.removeAttribute("aria-busy");
    }
  }

  function setupActions() {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      event.preventDefault();
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      runAction(button, button.dataset.action, button.dataset.path, body);
    });
    for (const form of document.querySelectorAll("form[data-api-form]")) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const body = {};
        for (const [key, value] of new FormData(form).entries()) if (value !== "") body[key] = value;
        const submit = form.querySelector("button[type=submit]") || form;
        submit.dataset.after = form.dataset.after;
        runAction(submit, form.dataset.method || "POST", form.dataset.path, body);
      });
    }
  }

  // --- recording playback ----------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setupRecording() {
    const dataNode = document.getElementById("page-data");
    if (!dataNode) return;
    const page = JSON.parse(dataNode.textContent);
    const media = document.getElementById("player");
    const list = document.getElementById("transcript-items");
    const position = document.getElementById("position");
    const timeline = document.getElementById("timeline");
    let items = [];
    let current = -1;
    let frame = 0;
    let total = Number(page.duration) || 0;

    const names = page.names || {};
    const who = (item) => {
      if (item.participant_id && names[item.participant_id]) return names[item.participant_id];
      return item.role === "assistant" ? "Agent" : item.role === "user" ? "User" : item.role || "";
    };

    // Scroll the transcript list (not the page) so the item sits in its upper third; then, if the list is on
    // screen but the item is outside the window (a short window), move the page by the least amount.
    function keepInView(node) {
      const box = list.getBoundingClientRect();
      let r = node.getBoundingClientRect();
      if (r.top < box.top || r.bottom > box.bottom) {
        list.scrollTop += r.top - box.top - Math.max(0, (box.height - r.height) / 3);
        r = node.getBoundingClientRect();
      }
      const listOnScreen = box.bottom > 0 && box.top < window.innerHeight;
      if (listOnScreen && (r.bottom > window.innerHeight || r.top < 0)) {
        const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
        const by = r.bottom > window.innerHeight ? r.bottom - window.innerHeight + 8 : r.top - 8;
        window.scrollBy({ top: by, behavior: reduce ? "auto" : "smooth" });
      }
    }

    // The item whose [start, end) holds t. Media positions are kept in microseconds, so a seek to an item's
    // start may read back a hair earlier: allow 1 ms.
    function indexAt(t) {
      for (let i = 0; i < items.length; i++) {
        const it = items[i];
        if (it.start !== null && it.end !== null && it.start - 0.001 <= t && t < it.end) return i;
      }
      return -1;
    }

    function sync() {
      if (!media) return;
      const t = media.currentTime;
      if (position) position.textContent = clock(t);
      if (timeline && total > 0) {
        const left = Math.min(100, (t / total) * 100) + "%";
        timeline.querySelectorAll(".ph").forEach((ph) => (ph.style.left = left));
      }
      const i = indexAt(t);
      if (i === current) return;
      if (current >= 0 && list.children[current]) {
        list.children[current].classList.remove("current");
        list.children[current].querySelector(".seek").removeAttribute("aria-current");
      }
      current = i;
      if (i >= 0 && list.children[i]) {
        const node = list.children[i];
        node.classList.add("current");
        node.querySelector(".seek").setAttribute("aria-current", "true");
        keepInView(node);
      }
    }

    function loop() {
      sync();
      frame = media && !media.paused ? requestAnimationFrame(loop) : 0;
    }

    function seek(seconds) {
      if (!media) return;
      media.currentTime = seconds;
      sync();
    }

    function renderTranscript(data) {
      items = (data.items || []).map((it) => ({
        ...it,
        start: typeof it.start === "number" ? it.start : null,
        end: typeof it.end === "number" ? it.end : null,
        text: it.text || (Array.isArray(it.content) ? it.content.join(" ") : ""),
      }));
      list.replaceChildren();
      if (!items.length) {
        list.append(el("li", { class: "empty" }, "No transcript items."));
        return;
      }
      items.forEach((it, index) => {
        const li = el("li", { "data-index": String(index) });
        if (it.start !== null) li.dataset.start = String(it.start);
        if (it.end !== null) li.dataset.end = String(it.end);
        const button = el("button", { type: "button", class: "seek" });
        const precise = it.start !== null ? clock(it.start) + (it.end !== null ? " – " + clock(it.end) : "") : "no time";
        const time = el("span", { class: "t", title: precise }, it.start !== null ? short(it.start) : "—");
        button.append(time, el("span", { class: "who" }, who(it)), el("span", { class: "text" }, it.text));
        button.setAttribute(
          "aria-label",
          (it.start !== null ? "Play from " + clock(it.start) + ", " : "") + who(it) + ": " + it.text,
        );
        if (it.start === null || !media) button.disabled = true;
        button.addEventListener("click", () => seek(it.start));
        li.append(button);
        list.append(li);
      });
      drawSpeech();
      current = -1;
      sync();
    }

    function drawTimeline() {
      if (!timeline || total <= 0) return;
      for (const row of page.timeline || []) {
        const lane = timeline.querySelector('.lane-row[data-participant="' + CSS.escape(row.participant_id) + '"] .lane');
        if (!lane) continue;
        lane.replaceChildren();
        for (const s of row.segments) {
          const bar = el("span", { class: "seg", title: s.kind + " #" + s.index + ": " + clock(s.start) + " – " + clock(s.end) });
          bar.style.left = Math.max(0, (s.start / total) * 100) + "%";
          bar.style.width = Math.max(0.3, ((Math.min(s.end, total) - Math.max(0, s.start)) / total) * 100) + "%";
          lane.append(bar);
        }
        lane.append(el("span", { class: "ph" }));
        lane.addEventListener("click", (event) => {
          const box = lane.getBoundingClientRect();
          seek(((event.clientX - box.left) / box.width) * total);
        });
      }
    }

    function drawSpeech() {
      if (!timeline || total <= 0) return;
      timeline.querySelectorAll(".speech").forEach((n) => n.remove());
      for (const it of items) {
        if (it.start === null || it.end === null) continue;
        const lane = it.participant_id
          ? timeline.querySelector('.lane-row[data-participant="' + CSS.escape(it.participant_id) + '"] .lane')
          : null;
        if (!lane) continue;
        const bar = el("span", { class: "speech", title: who(it) + " " + clock(it.start) + " – " + clock(it.end) + ": " + it.text });
        bar.style.left = Math.max(0, (it.start / total) * 100) + "%";
        bar.style.width = Math.max(0.3, ((it.end - it.start) / total) * 100) + "%";
        lane.insertBefore(bar, lane.querySelector(".ph"));
      }
    }

    if (media) {
      media.addEventListener("timeupdate", sync);
      media.addEventListener("seeked", sync);
      media.addEventListener("play", () => {
        if (!frame) frame = requestAnimationFrame(loop);
      });
      media.addEventListener("loadedmetadata", () => {
        if (!total && Number.isFinite(media.duration)) {
          total = media.duration;
          drawTimeline();
          drawSpeech();
        }
      });
    }
    drawTimeline();
    if (list) {
      api("GET", "v1/recordings/" + encodeURIComponent(page.recording_id) + "/transcript?format=json")
        .then(renderTranscript)
        .catch((err) => {
          list.replaceChildren(el("li", { class: "error" }, "Transcript not available: " + err.message));
        });
    }
    window.roomtapeDashboard = { sync, seek, items: () => items, current: () => current };
  }

  // --- a meeting's page: join links, who is in it ----------------------------------------------------------
  // --- a session's transcript, live -------------------------------------------------------------------------
  // While the session is LIVE the page asks /dashboard/sessions/{id}/transcript.json every POLL_MS and puts
  // the items it has not shown yet in place (diffed by id: a late segment with an earlier start, or an item
  // sent again, lands where it belongs). It follows the newest item unless the reader has scrolled up. It
  // stops once the session has ended and nothing is still being transcribed.
  function setupSessionTranscript() {
    const list = document.getElementById("session-transcript");
    if (!list) return;
    const progress = document.getElementById("transcription-progress");
    const shown = new Map(); // item id -> its <li>
    let timer = 0;
    let busy = false;

    function row(it) {
      const li = el("li", { "data-item": it.id });
      fill(li, it);
      return li;
    }

    function fill(li, it) {
      const precise = typeof it.start === "number" ? clock(it.start) + (typeof it.end === "number" ? " – " + clock(it.end) : "") : "no time";
      const time = el("span", { class: "t", title: precise }, typeof it.start === "number" ? short(it.start) : "—");
      // textContent only (el()): item text is whatever a speaker said or an agent sent, never markup.
      li.replaceChildren(time, el("span", { class: "who" }, it.speaker || ""), el("span", { class: "text" }, it.text || ""));
      li.dataset.text = it.text || "";
    }

    function showProgress(p) {
      if (!progress) return;
      progress.hidden = !p;
      if (!p) return;
      let text = "Transcription (live): " + p.status + " — " + p.segments_done + " of " + p.segments + " segments done";
      if (p.segments_failed) text += ", " + p.segments_failed + " failed";
      if (p.status === "failed" && p.error) text += ": " + p.error;
      progress.dataset.transcription = p.status;
      if (progress.textContent !== text) progress.textContent = text;
    }

    function render(data) {
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
      const items = data.items || [];
      list.querySelectorAll("li.loading, li.empty, li.error").forEach((n) => n.remove());
      let added = 0;
      let previous = null;
      for (const it of items) {
        let li = shown.get(it.id);
        if (!li) {
          li = row(it);
          shown.set(it.id, li);
          added++;
        } else if (li.dataset.text !== (it.text || "")) {
          fill(li, it);
        }
        const wanted = previous ? previous.nextSibling : list.firstChild;
        if (wanted !== li) list.insertBefore(li, wanted);
        previous = li;
      }
      if (!items.length && !list.children.length) list.append(el("li", { class: "empty" }, "No transcript items yet."));
      showProgress(data.transcription);
      if (added && atBottom) list.scrollTop = list.scrollHeight;
      if (added && shown.size > added) announce(added === 1 ? "1 new transcript item" : added + " new transcript items", document.getElementById("announcer"));
    }

    async function load() {
      if (busy) return;
      busy = true;
      try {
        const response = await fetch(list.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.status === 401) {
          location.assign("/dashboard/signin?next=" + encodeURIComponent(location.pathname));
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        const data = await response.json();
        render(data);
        const running = data.transcription && data.transcription.status === "running";
        if (data.status === "ENDED" && !running) {
          list.dataset.live = "false";
          clearInterval(timer);
          timer = 0;
        }
      } catch (err) {
        if (!shown.size) list.replaceChildren(el("li", { class: "error" }, "Transcript not available: " + err.message));
      } finally {
        busy = false;
      }
    }

    // Also on an ended session's page: its last segments may still be being transcribed (the first answer
    // says so, or stops the timer).
    timer = setInterval(() => document.hidden || load(), POLL_MS);
    load();
  }

  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  async function copyText(text, input) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (_) {
      // denied: fall back to copying the selection
    }
    input.select(); // plain http on a LAN address has no Clipboard API
    try {
      return document.execCommand("copy");
    } catch (_) {
      return false;
    }
  }

  function addJoinLink(base, name, token) {
    const url = base + "?token=" + encodeURIComponent(token);
    const list = document.getElementById("join-links");
    const id = "join-link-" + (list.children.length + 1);
    const li = el("li", { class: "join-link", "data-name": name });
    const input = el("input", { id, type: "text", readonly: "", value: url, class: "mono", spellcheck: "false" });
    const copy = el("button", { type: "button", class: "copy", "aria-label": "Copy the join link for " + name }, "Copy");
    const open = el("a", { href: url, target: "_blank", rel: "noopener", class: "button" }, "Open");
    open.setAttribute("aria-label", "Open the join link for " + name + " in a new tab");
    copy.addEventListener("click", async () => {
      const ok = await copyText(url, input);
      copy.textContent = ok ? "Copied" : "Copy";
      announce(ok ? "Copied the join link for " + name + "." : "Select the link and copy it (Ctrl+C).");
    });
    input.addEventListener("focus", () => input.select());
    li.append(el("label", { for: id }, "Join link for " + name), input, copy, open);
    list.append(li);
    input.focus();
  }

  function setupMeeting() {
    const box = document.getElementById("join-forms");
    if (!box) return;
    const meeting = encodeURIComponent(box.dataset.meeting);
    const base = box.dataset.joinBase;
    async function getLink(control, name, call) {
      control.disabled = true;
      try {
        const answer = await call();
        addJoinLink(base, name, answer.data.token);
        announce("Join link for " + name + " is ready.");
      } catch (err) {
        announce("No join link: " + err.message);
      } finally {
        control.disabled = false;
      }
    }
    for (const form of box.querySelectorAll("form[data-join-form]")) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const name = form.elements.name.value.trim();
        if (!name) {
          // The API takes a participant without a name; a person picking a link from a list needs one.
          form.elements.name.setAttribute("aria-invalid", "true");
          form.elements.name.focus();
          announce("Give a name for the join link: nobody was added.");
          return;
        }
        form.elements.name.removeAttribute("aria-invalid");
        const body = { name, preset_name: form.dataset.preset, custom_participant_id: "dashboard-" + randomId() };
        getLink(form.querySelector("button[type=submit]"), name, () => api("POST", "kit/meetings/" + meeting + "/participants", body));
      });
    }
    // A participant added before: a new token (the old one stops working).
    document.querySelectorAll("button[data-new-link]").forEach((button) => {
      button.addEventListener("click", () => {
        const path = "kit/meetings/" + meeting + "/participants/" + encodeURIComponent(button.dataset.newLink) + "/token";
        getLink(button, button.dataset.name, () => api("POST", path));
      });
    });

    // Who is in the meeting now: recording can start once somebody is.
    const live = document.getElementById("live-state");
    const start = document.getElementById("start-recording");
    const hint = document.getElementById("start-hint");
    let busy = false;
    setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      let session = null;
      try {
        session = (await api("GET", "kit/meetings/" + meeting + "/active-session")).data;
      } catch (_) {
        session = null; // 404: nobody is in the meeting
      } finally {
        busy = false;
      }
      const text = session ? "LIVE " + session.live_participants + " in the meeting" : "Nobody is in the meeting";
      if (live.textContent.replace(/\s+/g, " ").trim() !== text) {
        live.replaceChildren();
        if (session) live.append(el("span", { class: "status status-live" }, "LIVE"), " " + session.live_participants + " in the meeting");
        else live.append(text);
      }
      if (start) start.disabled = !session;
      if (hint) {
        hint.textContent = session
          ? "The meeting is live: start recording when everyone is in."
          : "Someone has to join first: open a join link.";
      }
    }, POLL_MS);
  }

  // --- live stream player ---------------------------------------------------------------------------------
  // The meeting's active livestream, played in the page: hls.js (served from /static/vendor/, Media Source
  // Extensions) where the browser has no native HLS (Chromium), the video element's own HLS otherwise. The
  // playback URL is signed; its path is used on this origin (the page's CSP allows no other for fetches).
  function setupLivestream() {
    const box = document.getElementById("livestream");
    if (!box) return;
    const meeting = encodeURIComponent(box.dataset.meeting);
    const video = document.getElementById("livestream-player");
    const state = document.getElementById("livestream-state");
    const start = document.getElementById("start-livestream");
    const stop = document.getElementById("stop-livestream");
    let playing = null;
    let hls = null;
    let busy = false;

    function detach() {
      if (hls) hls.destroy();
      hls = null;
      playing = null;
      video.removeAttribute("src");
      video.load();
      video.hidden = true;
      box.dataset.playing = "";
    }

    function attach(stream) {
      const url = new URL(stream.playback_url, location.href);
      const src = url.origin === location.origin ? url.pathname : url.href;
      const Hls = window.Hls;
      if (Hls && Hls.isSupported()) {
        // No worker: the page's CSP allows no blob: scripts.
        hls = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
        hls.on(Hls.Events.ERROR, (_event, data) => {
          if (data.fatal) {
            state.textContent = "The player stopped: " + data.details + ".";
            detach();
          }
        });
        hls.loadSource(src);
        hls.attachMedia(video);
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = src;
      } else {
        state.textContent = "This browser cannot play HLS.";
        return;
      }
      playing = stream.id;
      box.dataset.playing = stream.id;
      box.dataset.player = hls ? "hls.js" : "native";
      video.hidden = false;
      video.play().catch(() => {}); // muted: autoplay is allowed; otherwise the controls start it
    }

    async function tick() {
      if (busy) return;
      busy = true;
      let stream = null;
      try {
        stream = (await api("GET", "kit/meetings/" + meeting + "/active-livestream")).data;
      } catch (_) {
        stream = null; // 404: the meeting streams nothing
      } finally {
        busy = false;
      }
      if (stream && stream.status === "LIVE" && playing !== stream.id) {
        detach();
        attach(stream);
      } else if (!stream && playing) {
        detach();
      }
      const text = !stream
        ? "No live stream. Start one once someone is in the meeting."
        : stream.status === "LIVE"
          ? "Live stream LIVE" + (stream.ingest_server ? ", also pushed to " + stream.ingest_server : "") + "."
          : "Live stream " + stream.status + ": starting, the first segment comes in a few seconds.";
      if (state.textContent !== text && playing !== null) state.textContent = text;
      else if (!stream || stream.status !== "LIVE") state.textContent = text;
      box.dataset.status = stream ? stream.status : "";
      start.hidden = !!stream;
      stop.hidden = !stream;
    }

    afterHooks.livestream = () => tick();
    tick();
    setInterval(() => document.hidden || tick(), POLL_MS);
  }

  // --- one-time sign-in link ------------------------------------------------------------------------------
  // The link's secret is in the URL fragment, which the browser never sends: post it, and take it out of the
  // address bar (and so the history) first.
  function setupSigninLink() {
    const form = document.getElementById("signin-link-form");
    if (!form) return;
    const show = (id, visible) => {
      const node = document.getElementById(id);
      if (node) node.hidden = !visible;
    };
    const submit = () => {
      const secret = decodeURIComponent(location.hash.replace(/^#/, "")).trim();
      history.replaceState(null, "", location.pathname);
      show("link-status", Boolean(secret));
      show("link-missing", !secret);
      if (!secret) return;
      document.getElementById("link-secret").value = secret;
      form.submit();
    };
    // A new link pasted over this page (or over the page saying a link was refused, at the same address)
    // differs only in its fragment: the browser does not load the page again.
    window.addEventListener("hashchange", submit);
    if ("onLoad" in form.dataset) submit();
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupSigninLink();
    setupMeeting();
    setupLivestream();
    setupActions();
    startPolling();
    setupRecording();
    setupSessionTranscript();
  });
})();
