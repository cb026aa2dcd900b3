// gkit chat page: WebSocket, falling back to long polling when a WebSocket
// cannot open (or with ?transport=poll). User text is only ever put in the
// page with textContent, never innerHTML: "<script>" shows as text.
"use strict";

(() => {
  const MAX_NICK = 32;     // examples/chat/messages.py says the same
  const MAX_TEXT = 2000;
  const WS_OPEN_TIMEOUT = 5000;
  const MAX_BACKOFF = 10000;
  const KEEP = 500;        // messages kept in the page

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const room = roomFromLocation();
  const forcePoll = params.get("transport") === "poll";
  const cid = randomId();
  const state = {
    nick: null, epoch: null, lastId: 0, transport: null, ws: null,
    wsEverOpened: false, wsBackoff: 500, forceReset: false,
  };

  function roomFromLocation() {
    const m = location.pathname.match(/^\/r\/([A-Za-z0-9_-]{1,40})\/?$/);
    if (m) return m[1];
    const q = params.get("room");
    return q && /^[A-Za-z0-9_-]{1,40}$/.test(q) ? q : "lobby";
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- rendering ---------------------------------------------------------

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function append(li) {
    const log = $("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(li);
    while (log.children.length > KEEP) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    append(li);
  }

  function render(msg) {
    const li = document.createElement("li");
    li.dataset.id = String(msg.id);
    const when = new Date(msg.ts);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(time);
    if (msg.type === "msg") {
      li.className = "msg";
      li.append(span("nick", msg.nick), span("text", msg.text));
    } else {
      li.className = "event " + msg.type;
      li.append(span("text", msg.nick + (msg.type === "join" ? " joined" : " left")));
    }
    append(li);
  }

  // Ids grow by one per room within an epoch; a new epoch means the server's
  // store started afresh, so the page starts afresh too.
  function accept(msg) {
    if (msg.epoch !== state.epoch) {
      if (state.epoch !== null) {
        $("log").replaceChildren();
        notice("The server's history was reset.");
      }
      state.epoch = msg.epoch;
      state.lastId = 0;
    }
    if (msg.id <= state.lastId) return;
    state.lastId = msg.id;
    render(msg);
  }

  function restart(messages) {
    if (messages.length && state.epoch !== null && messages[0].epoch !== state.epoch) {
      state.epoch = null;
      $("log").replaceChildren();
      notice("The server's history was reset.");
    }
    messages.forEach(accept);
  }

  function setStatus(text, ok) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("connected", !!ok);
  }

  function setTransport(name) {
    state.transport = name;
    $("transport").textContent = name === "ws" ? "WebSocket" : "long polling";
  }

  function showError(text) {
    const el = $("error");
    el.textContent = text;
    el.hidden = !text;
  }

  // -- WebSocket -----------------------------------------------------------

  function handleFrame(frame) {
    if (frame.type === "history") restart(frame.messages);
    else if (frame.type === "error") showError(frame.error);
    else accept(frame);
  }

  function connectWs() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + location.host + "/ws?" + new URLSearchParams({ room, nick: state.nick });
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      startPoll("WebSocket failed: " + e.message);
      return;
    }
    let opened = false;
    setStatus(state.wsEverOpened ? "reconnecting…" : "connecting…", false);
    const openTimer = setTimeout(() => { if (!opened) sock.close(); }, WS_OPEN_TIMEOUT);
    sock.onopen = () => {
      opened = true;
      clearTimeout(openTimer);
      state.wsEverOpened = true;
      state.wsBackoff = 500;
      state.ws = sock;
      setTransport("ws");
      setStatus("connected", true);
    };
    sock.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handleFrame(frame);
    };
    sock.onclose = () => {
      clearTimeout(openTimer);
      if (state.ws === sock) state.ws = null;
      if (!opened && !state.wsEverOpened) {
        // Never opened: a proxy without Upgrade, a firewall, an old browser.
        startPoll("WebSocket could not open");
        return;
      }
      setStatus("reconnecting…", false);
      setTimeout(connectWs, state.wsBackoff);
      state.wsBackoff = Math.min(state.wsBackoff * 2, MAX_BACKOFF);
    };
  }

  // -- long polling ----------------------------------------------------------

  async function pollLoop() {
    let backoff = 500;
    while (state.transport === "poll") {
      const query = new URLSearchParams({
        room, nick: state.nick, cid, since: String(state.lastId),
        epoch: state.forceReset ? "" : (state.epoch || ""),
      });
      let data;
      try {
        const response = await fetch("/poll?" + query, { cache: "no-store" });
        data = await response.json();
        if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      } catch (e) {
        setStatus("reconnecting…", false);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        continue;
      }
      backoff = 500;
      setStatus("connected", true);
      state.forceReset = false;
      if (data.reset) {
        restart(data.messages);
      } else if (data.messages.length && state.epoch !== null &&
                 data.messages[0].epoch !== state.epoch) {
        state.forceReset = true;    // ids restarted: fetch the whole history next
      } else {
        data.messages.forEach(accept);
      }
    }
  }

  function startPoll(why) {
    if (state.transport === "poll") return;
    console.info("gkit chat: long polling (" + why + ")");
    setTransport("poll");
    setStatus("connecting…", false);
    pollLoop();
  }

  // -- sending, joining, leaving ---------------------------------------------

  async function send(text) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ text }));
      return;
    }
    // Long polling, or a WebSocket between reconnects: plain HTTP works too.
    const response = await fetch("/send", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ room, nick: state.nick, text, cid }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || "HTTP " + response.status);
    }
  }

  function join(nick) {
    state.nick = nick;
    try { localStorage.setItem("gkit-chat-nick", nick); } catch (e) { /* private mode */ }
    $("join").hidden = true;
    $("say").hidden = false;
    $("me").textContent = nick;
    $("text").focus();
    if (forcePoll) startPoll("forced by ?transport=poll");
    else if (!("WebSocket" in window)) startPoll("no WebSocket in this browser");
    else connectWs();
  }

  $("join").addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = $("nick").value.trim();
    if (!nick) return;
    if (nick.length > MAX_NICK) {
      showError("Nickname too long: the limit is " + MAX_NICK + " characters.");
      return;
    }
    showError("");
    join(nick);
  });

  $("say").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text.trim()) return;
    if (text.length > MAX_TEXT) {
      showError("Message too long: the limit is " + MAX_TEXT + " characters.");
      return;
    }
    try {
      await send(text);
      input.value = "";
      showError("");
    } catch (e) {
      showError("Not sent: " + e.message);
    }
  });

  $("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = "/r/" + encodeURIComponent($("room-name").value.trim());
  });

  window.addEventListener("pagehide", () => {
    if (state.transport === "poll" && state.nick) {
      navigator.sendBeacon("/leave", new URLSearchParams({ room, cid }));
    }
  });

  // -- start -----------------------------------------------------------------

  async function start() {
    $("room").textContent = "#" + room;
    $("room-name").value = room;
    document.title = "#" + room + " · gkit chat";
    try {
      const response = await fetch("/history?" + new URLSearchParams({ room }), { cache: "no-store" });
      const data = await response.json();
      if (response.ok) restart(data.messages);
      else showError(data.error || "HTTP " + response.status);
    } catch (e) {
      showError("Cannot reach the server: " + e.message);
    }
    let saved = null;
    try { saved = localStorage.getItem("gkit-chat-nick"); } catch (e) { /* private mode */ }
    if (saved) {
      $("nick").value = saved;
      if (!state.nick) join(saved);
    }
  }

  start();
})();
