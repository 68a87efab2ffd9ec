// Sound: a chime made with Web Audio, then the call spoken by the server (espeak-ng WAV),
// else by the browser's own voice for that language, else the chime alone.

import { t } from "./strings.js";

const CHIME_NOTES = [[659.25, 0], [523.25, 0.35]];   // E5 then C5: a two-tone "ding-dong"
const GAP_MS = 250;
const SERVER_VOICE_RETRY_MS = 10 * 60 * 1000;

export class Announcer {
  constructor() {
    this.context = null;
    this.queue = [];
    this.playing = false;
    this.voice = "none";        // what the last call used: server | browser | none
    this.serverVoice = true;    // until the server says it has none (503)
    this.askServerAgainAt = 0;
    this.listeners = new Set();
    this.cache = new Map();     // url -> AudioBuffer
    this.played = [];           // {clinic, number, seq, voices: [ar, en]} of the calls played
  }

  /** Create (or resume) the audio context; true when sound can play now. With Chromium's
   *  --autoplay-policy=no-user-gesture-required this succeeds without a tap. */
  async unlock() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return false;
    if (!this.context) this.context = new Context();
    if (this.context.state !== "running") {
      try {
        await Promise.race([this.context.resume(), new Promise((r) => setTimeout(r, 300))]);
      } catch { /* still locked */ }
    }
    this.changed();
    return this.unlocked;
  }

  get unlocked() {
    return !!this.context && this.context.state === "running";
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this);
  }

  /** Queue a call: {clinic, number, names: {ar, en}}. Calls play one after another. */
  announce(call) {
    this.queue.push(call);
    // A long backlog (screens back after an outage) keeps only the latest few.
    if (this.queue.length > 4) this.queue.splice(0, this.queue.length - 4);
    if (!this.playing) this.drain();
  }

  async drain() {
    this.playing = true;
    while (this.queue.length) {
      const call = this.queue.shift();
      try {
        await this.play(call);
      } catch { /* one bad call must not silence the next */ }
    }
    this.playing = false;
  }

  async play(call) {
    if (!this.unlocked) return;
    await this.chime();
    const voices = [];
    for (const code of ["ar", "en"]) {
      await sleep(GAP_MS);
      voices.push(await this.speak(call, code));
    }
    this.played.push({ clinic: call.clinic, number: call.number, seq: call.seq, voices });
    if (this.played.length > 100) this.played.shift();
    this.changed();
  }

  chime() {
    const ctx = this.context;
    const start = ctx.currentTime + 0.02;
    for (const [frequency, offset] of CHIME_NOTES) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.5, start + offset + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.6);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + offset);
      osc.stop(start + offset + 0.65);
    }
    return sleep(1000);
  }

  /** Say the call in `code`; returns the voice that said it (server, browser or none). */
  async speak(call, code) {
    if (!this.serverVoice && Date.now() >= this.askServerAgainAt) this.serverVoice = true;
    if (this.serverVoice && (await this.speakFromServer(call, code))) {
      this.voice = "server";
    } else if (await this.speakInBrowser(call, code)) {
      this.voice = "browser";
    } else {
      this.voice = "none";
    }
    return this.voice;
  }

  async speakFromServer(call, code) {
    const url = `/api/v1/announce?clinic=${encodeURIComponent(call.clinic)}`
      + `&number=${encodeURIComponent(call.number)}&lang=${code}`;
    let buffer = this.cache.get(url);
    if (!buffer) {
      let response;
      try {
        response = await fetch(url);
      } catch {
        return false;
      }
      if (response.status === 503) {
        // No espeak-ng on this server (Retry-After an hour), or a recording it could
        // not make just now (seconds): use the browser's voice until then.
        const after = Number(response.headers.get("Retry-After"));
        this.serverVoice = false;
        this.askServerAgainAt = Date.now()
          + (after > 0 ? Math.min(after * 1000, SERVER_VOICE_RETRY_MS) : SERVER_VOICE_RETRY_MS);
        return false;
      }
      if (!response.ok) return false;
      try {
        buffer = await this.context.decodeAudioData(await response.arrayBuffer());
      } catch {
        return false;
      }
      if (this.cache.size > 64) this.cache.clear();
      this.cache.set(url, buffer);
    }
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const ended = new Promise((resolve) => { source.onended = resolve; });
    source.start();
    await Promise.race([ended, sleep(buffer.duration * 1000 + 500)]);
    return true;
  }

  async speakInBrowser(call, code) {
    const synth = window.speechSynthesis;
    if (!synth || typeof SpeechSynthesisUtterance === "undefined") return false;
    const voice = synth.getVoices().find((v) => v.lang && v.lang.toLowerCase().startsWith(code));
    if (!voice) return false;
    const text = t("speech.call", { number: call.number, clinic: call.names[code] }, code);
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.voice = voice;
    utterance.lang = voice.lang;
    const done = new Promise((resolve) => {
      utterance.onend = resolve;
      utterance.onerror = resolve;
    });
    synth.speak(utterance);
    await Promise.race([done, sleep(6000)]);
    return true;
  }

  /** The voice a display reports: what it would use now. */
  get voiceKind() {
    if (!this.unlocked) return "none";
    if (this.serverVoice) return "server";
    const synth = window.speechSynthesis;
    return synth && synth.getVoices().length ? "browser" : "none";
  }
}

/** A short chime on a phone (NEAR_TURN, YOUR_TURN), when the page may play sound. */
export function phoneChime(announcer) {
  if (announcer.unlocked) announcer.chime().catch(() => {});
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
