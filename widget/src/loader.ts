// widget.js: the small loader every page downloads. It renders the button, owns the
// call's life cycle (microphone, start-call, end-call, states, errors, events) and
// loads the call chunk holding livekit-client only when a call starts.

import { CHUNK_EVENT, type CallChunk, type CallSession, type Transcript } from "./protocol";

// Injected by build.mjs.
declare const __CHUNK__: string; // file name of the call chunk, e.g. "call-0123abcd.js"
declare const __CHUNK_SRI__: string; // its SRI hash, "sha384-…"
declare const __CSS__: string; // the widget's stylesheet (minified)
declare const __CSS_FILE__: string; // the same stylesheet as a file, for browsers without adoptedStyleSheets

type State = "idle" | "connecting" | "active" | "reconnecting" | "ended" | "error";

export interface StartOptions {
  /** Agent name (one of the server's `agents`). */
  agent?: string;
  /** Variables the server allows the browser to set (`client_variables`). */
  variables?: Record<string, string>;
  /** Passed to livekit-client's Room options (false forces dual peer connections). */
  singlePeerConnection?: boolean;
}

interface WidgetError extends Error {
  code: string;
  status?: number;
  serverCode?: string;
  retryAfter?: number;
}

interface Attempt {
  done: boolean;
  stream?: MediaStream;
  mic?: MediaStreamTrack;
  endToken?: string;
  callId?: string;
  session?: CallSession;
  room?: unknown;
  audio: HTMLAudioElement;
  promise?: Promise<void>;
}

interface View {
  host: HTMLElement;
  render(): void;
  transcript(t: Transcript): void;
  clear(): void;
}

const MESSAGES: Record<string, string> = {
  insecure_context: "Voice calls need a secure (HTTPS) page.",
  unsupported: "This browser cannot make voice calls.",
  mic_denied: "Microphone access is blocked. Allow the microphone for this site, then try again.",
  no_microphone: "No microphone was found. Connect one, then try again.",
  mic_in_use: "Your microphone is in use by another app or could not start. Close that app, then try again.",
  network_error: "Could not reach the server. Check your connection, then try again.",
  start_refused: "The call was refused.",
  start_failed: "The call could not be started. Please try again later.",
  load_failed: "The call could not be loaded. Reload the page, then try again.",
  voice_unreachable: "Could not reach the voice server. Check your connection, then try again.",
  voice_refused: "The voice server refused the call. Please try again.",
  connection_lost: "The call was interrupted. Please try again.",
};
const STATUS: Partial<Record<State, string>> = {
  connecting: "Connecting…",
  active: "Connected",
  reconnecting: "Reconnecting…",
  ended: "Call ended",
};

function main(): void {
  const w = window as unknown as { OneInbox?: object };
  if (w.OneInbox) return; // included twice: the first copy wins
  const script =
    (document.currentScript as HTMLScriptElement | null) ??
    document.querySelector<HTMLScriptElement>('script[src*="/widget.js"]');
  if (!script) return;
  // The routes live next to this script: {prefix}/widget.js -> {prefix}
  const base = script.src.replace(/[?#].*$/, "").replace(/\/[^/]*$/, "");
  const sameOrigin = new URL(base, location.href).origin === location.origin;

  // ---- options from data-* attributes (the script tag, or a <oneinbox-call> element) ----
  const attr = (el: Element, name: string): string | undefined =>
    el.getAttribute("data-" + name) ?? el.getAttribute(name) ?? undefined;
  const options = (el: Element, inherit?: Opts): Opts => {
    const variables: Record<string, string> = { ...inherit?.variables };
    for (const a of Array.from(el.attributes)) {
      const m = /^(?:data-)?var-(.+)$/.exec(a.name);
      if (m) variables[m[1].replace(/-/g, "_")] = a.value;
    }
    const o: Opts = { ...inherit, variables };
    for (const k of ["agent", "label", "label-end", "label-mute", "label-unmute", "position"]) {
      const v = attr(el, k);
      if (v) o[k] = v;
    }
    return o;
  };
  interface Opts {
    [k: string]: string | Record<string, string> | undefined;
    variables: Record<string, string>;
  }
  const scriptOpts = options(script);

  // ---- the call controller: one call at a time per page ----
  let state: State = "idle";
  let muted = false;
  let attempt: Attempt | undefined;
  let lastError: WidgetError | undefined;
  const views = new Set<View>();
  const transcripts: Transcript[] = [];

  const emit = (type: string, detail: unknown) => {
    for (const target of [...Array.from(views, (v) => v.host), document]) {
      target.dispatchEvent(new CustomEvent("oneinbox:" + type, { detail }));
    }
  };
  const setState = (next: State) => {
    if (next === state) return;
    const previous = state;
    state = next;
    for (const v of views) v.render();
    emit("state", { state: next, previous });
  };
  const error = (code: string, extra?: Partial<WidgetError>, message?: string): WidgetError =>
    Object.assign(new Error(message || MESSAGES[code] || code), { code }, extra);

  const postJSON = (path: string, body: unknown, keepalive = false) =>
    fetch(base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      keepalive,
    });

  /** Releases everything the attempt holds. Idempotent: called again as late results arrive.
   *  `leaving`: the page is going away, so end-call cannot wait for the room to be left. */
  const release = (a: Attempt, leaving = false): Promise<void> => {
    a.stream?.getTracks().forEach((t) => t.stop());
    a.mic?.stop();
    const s = a.session;
    a.session = undefined;
    const left = s ? s.disconnect().catch(() => undefined) : Promise.resolve();
    if (a.endToken) {
      const end_token = a.endToken;
      a.endToken = undefined;
      // Never block the hang-up on end-call, and tolerate its failure.
      const endCall = () =>
        postJSON("/end-call", { end_token }, true).then(
          (r) => r.ok || console.warn("oneinbox: end-call answered", r.status),
          (e: unknown) => console.warn("oneinbox: end-call failed", e),
        );
      // Leave the room first (up to 1 s), so the voice service hears the caller hang up
      // before the server-side stop arrives and the call's end reason says so.
      if (leaving) endCall();
      else void Promise.race([left, new Promise((r) => setTimeout(r, 1000))]).then(endCall);
    }
    return left;
  };

  const finish = (a: Attempt, reason: string, err?: WidgetError): Promise<void> => {
    if (a.done) return Promise.resolve();
    a.done = true;
    const released = release(a, reason === "page_hide");
    lastError = err;
    setState(err ? "error" : "ended");
    if (err) {
      const { code, message, status, serverCode, retryAfter } = err;
      emit("error", { code, message, status, serverCode, retryAfter });
    }
    emit("ended", { reason, callId: a.callId, error: err?.code });
    return released;
  };

  let chunk: Promise<CallChunk> | undefined;
  const loadChunk = (): Promise<CallChunk> =>
    (chunk ??= new Promise<CallChunk>((resolve, reject) => {
      const s = document.createElement("script");
      s.src = base + "/" + __CHUNK__;
      s.integrity = __CHUNK_SRI__;
      if (!sameOrigin) s.crossOrigin = "anonymous";
      if (script.nonce) s.nonce = script.nonce;
      s.addEventListener(CHUNK_EVENT, (e) => resolve((e as CustomEvent<CallChunk>).detail));
      s.onload = () => reject(new Error("no chunk"));
      s.onerror = () => {
        chunk = undefined; // allow a retry on the next start
        s.remove();
        reject(new Error("chunk failed"));
      };
      document.head.appendChild(s);
    }));

  // DOMExceptions have a numeric `code`; ours is a string.
  const ours = (e: unknown): e is WidgetError => typeof (e as WidgetError | null)?.code === "string";
  const micError = (e: unknown): WidgetError => {
    const name = (e as DOMException | undefined)?.name;
    return error(
      name === "NotAllowedError" || name === "SecurityError"
        ? "mic_denied"
        : name === "NotFoundError" || name === "OverconstrainedError"
          ? "no_microphone"
          : "mic_in_use",
    );
  };

  // User Timing marks for each step of a call, for benchmarks (names are unstable).
  const mark = (step: string) => performance.mark?.("oneinbox:" + step);

  const run = async (a: Attempt, mic: Promise<MediaStream>, o: StartOptions): Promise<void> => {
    try {
      try {
        a.stream = await mic;
      } catch (e) {
        throw ours(e) ? e : micError(e);
      }
      mark("mic");
      const loaded = loadChunk(); // started in the click; judged after start-call
      loaded.catch(() => undefined);
      a.mic = a.stream.getAudioTracks()[0];
      if (a.done) return void release(a);
      if (!a.mic) throw error("no_microphone");
      a.mic.enabled = !muted;

      const body: { agent?: string; variables?: Record<string, string> } = {};
      if (o.agent) body.agent = o.agent;
      if (o.variables && Object.keys(o.variables).length) body.variables = o.variables;
      let res: Response;
      try {
        res = await postJSON("/start-call", body);
      } catch {
        throw error("network_error");
      }
      const data = (await res.json().catch(() => null)) as Record<string, unknown> | null;
      mark("start-call");
      const call = res.ok ? data : null;
      if (call && typeof call.end_token === "string") a.endToken = call.end_token;
      if (a.done) return void release(a); // hung up meanwhile: end the call we just got
      if (!call || typeof call.server_url !== "string" || typeof call.participant_token !== "string") {
        const e = data?.error as { code?: string; message?: string } | undefined;
        const retry = res.headers.get("Retry-After");
        throw error(
          res.status >= 400 && res.status < 500 ? "start_refused" : "start_failed",
          {
            status: res.status,
            serverCode: e?.code,
            retryAfter: retry && +retry >= 0 ? +retry : undefined,
          },
          typeof e?.message === "string" ? e.message : undefined,
        );
      }
      a.callId = typeof call.call_id === "string" ? call.call_id : undefined;

      let mod: CallChunk;
      try {
        mod = await loaded;
      } catch {
        throw error("load_failed");
      }
      mark("chunk");
      if (a.done) return void release(a);
      const session = (a.session = mod.create({
        serverUrl: call.server_url,
        token: call.participant_token,
        mic: a.mic,
        audio: a.audio,
        muted,
        singlePeerConnection: o.singlePeerConnection,
        on: {
          state: (s) => a === attempt && !a.done && setState(s),
          transcript: (t) => {
            if (a !== attempt || a.done) return;
            const i = transcripts.findIndex((x) => x.id === t.id);
            if (i < 0) transcripts.push(t);
            else transcripts[i] = t;
            if (transcripts.length > 100) transcripts.shift();
            for (const v of views) v.transcript(t);
            emit("transcript", t);
          },
          ended: (reason, lost) => void finish(a, reason, lost ? error("connection_lost") : undefined),
        },
      }));
      a.room = session.room;
      try {
        await session.connect();
      } catch (e) {
        throw error(ours(e) ? e.code : "voice_unreachable");
      }
      mark("active");
      if (!a.done) setState("active");
    } catch (e) {
      if (a.done) return; // hung up meanwhile: not an error
      const err = ours(e) ? e : error("connection_lost");
      await finish(a, "error", err);
      throw err;
    }
  };

  const start = (o: StartOptions = {}): Promise<void> => {
    if (attempt && !attempt.done) return attempt.promise ?? Promise.resolve();
    const audio = document.createElement("audio");
    const a: Attempt = (attempt = { done: false, audio });
    muted = false;
    lastError = undefined;
    transcripts.length = 0;
    for (const v of views) v.clear();
    mark("click");
    setState("connecting");
    // Still inside the click: ask for the microphone and unlock audio playback.
    let mic: Promise<MediaStream>;
    if (!isSecureContext) {
      mic = Promise.reject(error("insecure_context"));
    } else if (!navigator.mediaDevices?.getUserMedia || typeof RTCPeerConnection === "undefined") {
      mic = Promise.reject(error("unsupported"));
    } else {
      mic = navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      audio.autoplay = true;
      audio.srcObject = new MediaStream();
      audio.play().catch(() => undefined);
      // Fetched while the person answers the permission prompt and start-call runs.
      loadChunk().catch(() => undefined);
    }
    return (a.promise = run(a, mic, o));
  };

  const end = (): Promise<void> => (attempt ? finish(attempt, "hangup") : Promise.resolve());

  const setMuted = (m: boolean): void => {
    muted = !!m;
    if (attempt && !attempt.done) {
      if (attempt.mic) attempt.mic.enabled = !muted;
      attempt.session?.setMuted(muted);
    }
    for (const v of views) v.render();
    emit("mute", { muted });
  };

  addEventListener("pagehide", () => {
    if (attempt) void finish(attempt, "page_hide");
  });

  // ---- the UI: one Shadow DOM view per mount point ----
  let sheet: CSSStyleSheet | undefined;
  const mountView = (host: HTMLElement, o: Opts, floating: boolean): View => {
    const root = host.attachShadow({ mode: "open" });
    if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(__CSS__);
      }
      root.adoptedStyleSheets = [sheet];
    } else {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = base + "/" + __CSS_FILE__;
      root.appendChild(link);
    }
    if (floating) host.setAttribute("data-floating", "");
    const el = <K extends keyof HTMLElementTagNameMap>(
      tag: K,
      cls: string,
      parent: Node,
      attrs: Record<string, string> = {},
    ): HTMLElementTagNameMap[K] => {
      const e = document.createElement(tag);
      e.className = cls;
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      parent.appendChild(e);
      return e;
    };
    const wrap = el("div", "w", root, { part: "widget" });
    const row = el("div", "r", wrap);
    const mute = el("button", "m", row, { type: "button", part: "mute", "aria-pressed": "false" });
    const button = el("button", "b", row, { type: "button", part: "button" });
    const status = el("p", "s", wrap, { part: "status", role: "status" });
    const alert = el("p", "e", wrap, { part: "error", role: "alert" });
    const log = el("div", "t", wrap, {
      part: "transcript",
      role: "log",
      "aria-live": "polite",
      "aria-label": "Transcript",
    });
    const lines = new Map<string, HTMLParagraphElement>();
    const label = (k: string, d: string) => (o[k] as string | undefined) || d;
    const inCall = () => state === "connecting" || state === "active" || state === "reconnecting";
    button.addEventListener("click", () => {
      if (inCall()) void end();
      else start({ agent: o.agent as string | undefined, variables: o.variables }).catch(() => undefined);
    });
    mute.addEventListener("click", () => setMuted(!muted));
    const view: View = {
      host,
      render() {
        const live = inCall();
        wrap.setAttribute("data-state", state);
        button.textContent = live ? label("label-end", "End call") : label("label", "Talk to AI");
        mute.hidden = !live;
        mute.textContent = muted ? label("label-unmute", "Unmute") : label("label-mute", "Mute");
        mute.setAttribute("aria-pressed", String(muted));
        status.textContent = STATUS[state] || "";
        alert.textContent = state === "error" && lastError ? lastError.message : "";
        log.hidden = !lines.size;
      },
      transcript(t) {
        let line = lines.get(t.id);
        if (!line) {
          line = el("p", t.speaker === "user" ? "u" : "a", log);
          lines.set(t.id, line);
          if (lines.size > 100) {
            const [first] = lines;
            first[1].remove();
            lines.delete(first[0]);
          }
        }
        line.textContent = (t.speaker === "user" ? "You: " : "Agent: ") + t.text;
        line.classList.toggle("p", !t.final);
        log.hidden = false;
        log.scrollTop = log.scrollHeight;
      },
      clear() {
        lines.clear();
        log.replaceChildren();
        log.hidden = true;
      },
    };
    if (o.position) host.setAttribute("data-position", o.position as string);
    view.render();
    return view;
  };

  const mode = attr(script, "mount") || "auto";
  if (mode !== "manual") {
    customElements.get("oneinbox-call") ||
      customElements.define(
        "oneinbox-call",
        class extends HTMLElement {
          v?: View;
          connectedCallback() {
            this.v ??= mountView(this, options(this, scriptOpts), false);
            views.add(this.v);
          }
          disconnectedCallback() {
            if (this.v) views.delete(this.v);
          }
        },
      );
    if (mode !== "inline") {
      const float = () => {
        if (mode === "auto" && document.querySelector("oneinbox-call")) return;
        const host = document.createElement("oneinbox-widget");
        views.add(mountView(host, scriptOpts, true));
        document.body.appendChild(host);
      };
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", float);
      else float();
    }
  }
  if (attr(script, "prefetch") === "idle") {
    const idle = (window as { requestIdleCallback?: (f: () => void) => void }).requestIdleCallback;
    const prefetch = () => void loadChunk().catch(() => undefined);
    if (idle) idle(prefetch);
    else setTimeout(prefetch, 2000);
  }

  w.OneInbox = {
    start,
    end,
    setMuted,
    get state() {
      return state;
    },
    get muted() {
      return muted;
    },
    get error() {
      return lastError && { code: lastError.code, message: lastError.message };
    },
    get callId() {
      return attempt?.callId;
    },
    get transcripts() {
      return transcripts.slice();
    },
    /** Unstable, for tests and debugging: the current or last call's internals. */
    _debug: {
      get mic() {
        return attempt?.mic;
      },
      get audio() {
        return attempt?.audio;
      },
      get room() {
        return attempt?.room;
      },
      loadChunk,
    },
  };
  document.dispatchEvent(new CustomEvent("oneinbox:ready", { detail: w.OneInbox }));
}

main();
