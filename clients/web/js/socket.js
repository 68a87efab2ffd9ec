// The one socket every page uses: /ws with reconnect (backoff + jitter), channels resumed
// with `since`, requests matched to replies by id, a heartbeat and one online/offline state.

const PING_AFTER_MS = 1000;     // silence before we ask the server whether it is there
const DEAD_AFTER_MS = 2500;     // silence that means the link is dead (offline within 3 s)
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 10000;
const REQUEST_TIMEOUT_MS = 8000;

export class RequestError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.code = code;
    this.status = extra.status ?? null;
    this.retryAfter = extra.retry_after ?? null;
  }
}

export class Socket {
  /**
   * @param {object} options
   * @param {string} [options.url] the WebSocket address (default: this origin's /ws)
   * @param {(socket: Socket) => Promise<void>} [options.onConnect] run on every (re)connect
   *   before channels are resumed (authenticate, introduce a display)
   */
  constructor({ url, onConnect } = {}) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${scheme}//${location.host}/ws`;
    this.onConnect = onConnect || (async () => {});
    this.channels = new Map();      // name -> {handler, seq}
    this.pending = new Map();       // id -> {resolve, reject, timer}
    this.listeners = new Set();     // state listeners
    this.frameListeners = new Set();
    this.nextId = 1;
    this.ws = null;
    this.attempt = 0;
    this.online = false;
    this.offlineSince = Date.now();
    this.lastHeard = 0;
    this.heartbeat = null;
    this.retryTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.drop();
  }

  /** state: {online, offlineSince}; called now and on every change. */
  onState(listener) {
    this.listeners.add(listener);
    listener(this.state());
    return () => this.listeners.delete(listener);
  }

  /** Every pushed frame that is not a reply (notices on unsubscribed channels, invalidations). */
  onFrame(listener) {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  state() {
    return { online: this.online, offlineSince: this.online ? null : this.offlineSince };
  }

  /** Follow a channel: handler(frame) gets its snapshots, events and notices, across
   *  reconnects; after a reconnect the channel resumes from the highest seq seen. */
  subscribe(channel, handler) {
    this.channels.set(channel, { handler, seq: null });
    // A refusal now is retried at the next connection, which resumes every channel.
    if (this.online) this.resume(channel).catch(() => {});
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    if (this.online) this.request("unsubscribe", { channel }).catch(() => {});
  }

  /** Forget the seq of a channel so that the next resume starts from a snapshot. */
  forget(channel) {
    const entry = this.channels.get(channel);
    if (entry) entry.seq = null;
  }

  request(op, args, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RequestError("offline"));
    }
    const id = this.nextId++;
    const frame = args === undefined ? { id, op } : { id, op, args };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError("timeout"));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify(frame));
    });
  }

  // --- connection -------------------------------------------------------------------

  open() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url, ["mmc.v1"]);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.connected(ws);
    ws.onmessage = (message) => this.receive(ws, message.data);
    ws.onclose = () => this.lost(ws);
    ws.onerror = () => {};  // onclose follows and does the work
  }

  async connected(ws) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    this.startHeartbeat();
    try {
      await this.onConnect(this);
      if (ws !== this.ws) return;
      await Promise.all([...this.channels.keys()].map((name) => this.resume(name)));
    } catch (error) {
      if (ws === this.ws && !(error instanceof RequestError && error.code === "offline")) {
        this.drop();  // half a connection is worse than none: start again
      }
      return;
    }
    if (ws !== this.ws) return;
    this.attempt = 0;
    this.setOnline(true);
  }

  async resume(name) {
    const entry = this.channels.get(name);
    if (!entry) return;
    const args = entry.seq === null ? { channel: name } : { channel: name, since: entry.seq };
    await this.request("subscribe", args);
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if ("ok" in frame) {
      const waiting = this.pending.get(frame.id);
      if (!waiting) return;
      this.pending.delete(frame.id);
      clearTimeout(waiting.timer);
      if (frame.ok) waiting.resolve(frame.result);
      else waiting.reject(new RequestError(frame.error, frame.message, frame));
      return;
    }
    const entry = frame.channel ? this.channels.get(frame.channel) : null;
    if (entry) {
      if (typeof frame.seq === "number" && (entry.seq === null || frame.seq > entry.seq || frame.type === "snapshot")) {
        entry.seq = frame.seq;
      }
      entry.handler(frame);
    }
    for (const listener of this.frameListeners) listener(frame);
  }

  lost(ws) {
    if (ws !== this.ws) return;
    this.drop();
  }

  /** Close whatever is open, fail what waits, go offline, and try again later. */
  drop() {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch { /* already closed */ }
    }
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new RequestError("offline"));
      this.pending.delete(id);
    }
    this.setOnline(false);
    this.retry();
  }

  retry() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    // Full jitter between half and all of an exponential step, so that a room of
    // screens that lost the server together does not return in one wave.
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = step / 2 + Math.random() * step / 2;
    this.attempt = Math.min(this.attempt + 1, 16);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => {
      const silent = Date.now() - this.lastHeard;
      if (silent >= DEAD_AFTER_MS) {
        this.drop();
      } else if (silent >= PING_AFTER_MS && this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.request("ping", undefined, { timeout: DEAD_AFTER_MS }).catch(() => {});
      }
    }, 500);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  setOnline(online) {
    if (online === this.online) return;
    this.online = online;
    if (!online) this.offlineSince = Date.now();
    const state = this.state();
    for (const listener of this.listeners) listener(state);
  }
}
