// The call's life cycle: one call at a time per page. A small state machine
//
//   idle -> connecting -> active <-> reconnecting
//               \            \            \
//                +-> ended | error  <------+
//
// owning the microphone, start-call, the call chunk's session, end-call, mute and the
// transcript. It knows nothing of the DOM views: it reports every change through `emit`.

import type { CallChunk, CallSession, Transcript } from "./protocol";
import { type Opts, text as textOf } from "./options";
import { TEXTS, errorKey } from "./strings";

export type State = "idle" | "connecting" | "active" | "reconnecting" | "ended" | "error";

export interface StartOptions {
  /** Agent name (one of the server's `agents`). */
  agent?: string;
  /** Variables the server allows the browser to set (`client_variables`). */
  variables?: Record<string, string>;
  /** Passed to livekit-client's Room options (false forces dual peer connections). */
  singlePeerConnection?: boolean;
  /** The visitor is signed out: fail at once with `signed_out`, never asking for the microphone. */
  signedOut?: boolean;
}

export interface WidgetError extends Error {
  code: string;
  status?: number;
  serverCode?: string;
  retryAfter?: number;
}

/**
 * What the controller reports, in order of occurrence:
 * - `reset`: a new call starts (views clear the last call's transcript); not a DOM event
 * - `state` `{state, previous}`, `transcript` (a Transcript), `mute` `{muted}`,
 *   `error` `{code, message, status?, serverCode?, retryAfter?}`, `ended` `{reason, callId, error?}`,
 *   `agent` `{state}` (the agent's listening / thinking / speaking)
 * - internal, not DOM events: `chunk` (the call chunk, once loaded), `notice` (a text)
 */
export type Emit = (type: string, detail?: unknown) => void;

export interface Controller {
  readonly state: State;
  readonly muted: boolean;
  readonly error: WidgetError | undefined;
  readonly callId: string | undefined;
  /** The current call's transcript segments (a copy). */
  readonly transcripts: Transcript[];
  /** The agent's state during a call ("" before it is known). */
  readonly agentState: string;
  /** When the call became active (performance.now()), 0 before. */
  readonly since: number;
  /** A passing remark for the person (e.g. the microphone was switched), or "". */
  readonly notice: string;
  start(o?: StartOptions): Promise<void>;
  end(): Promise<void>;
  setMuted(m: boolean): void;
  /** The current or last call's internals, for tests (unstable). */
  readonly attempt: Attempt | undefined;
}

export interface Attempt {
  done: boolean;
  stream?: MediaStream;
  mic?: MediaStreamTrack;
  endToken?: string;
  callId?: string;
  session?: CallSession;
  room?: unknown;
  audio: HTMLAudioElement;
  promise?: Promise<void>;
  /** start-call's answer, once asked (in the click when the microphone is already allowed). */
  answer?: Promise<Answer>;
}

interface Answer {
  res: Response;
  data: Record<string, unknown> | null;
}


// DOMExceptions have a numeric `code`; ours is a string.
const ours = (e: unknown): e is WidgetError => typeof (e as WidgetError | null)?.code === "string";

const CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

// User Timing marks for each step of a call, for benchmarks (names are unstable).
const mark = (step: string) => performance.mark?.("oneinbox:" + step);

/** `base`: where the routes live ({prefix}); `loadChunk`: fetches the call chunk;
 *  `o`: the script tag's options (its strings are the events' messages). */
export function createController(base: string, loadChunk: () => Promise<CallChunk>, emit: Emit, o: Opts): Controller {
  const opts = o;
  const text = (key: string) => textOf(opts, key);
  let state: State = "idle";
  let muted = false;
  let attempt: Attempt | undefined;
  let lastError: WidgetError | undefined;
  let agentState = "";
  let since = 0;
  let notice = "";
  const transcripts: Transcript[] = [];

  const error = (code: string, extra?: Partial<WidgetError>, message?: string): WidgetError =>
    Object.assign(new Error(message || text(errorKey(code))), { code }, extra);

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

  const say = (n: string) => emit("notice", (notice = n));

  const setState = (next: State) => {
    if (next === state) return;
    const previous = state;
    state = next;
    notice = "";
    if (next === "active" && !since) since = performance.now();
    emit("state", { state: next, previous });
  };

  // Whether the microphone is already allowed (Permissions API): then start-call need not
  // wait for getUserMedia. Unknown (or a browser without it) keeps the safe order.
  let granted = false;
  navigator.permissions
    ?.query({ name: "microphone" as PermissionName })
    .then((p) => {
      const read = () => (granted = p.state === "granted");
      read();
      p.addEventListener("change", read);
    })
    .catch(() => undefined);

  /** Warms up the connection to the voice server while the call chunk loads. */
  const preconnect = (url: string) => {
    const link = document.createElement("link");
    link.rel = "preconnect";
    link.href = new URL(url.replace(/^ws/, "http")).origin;
    document.head.appendChild(link);
  };

  // The routes on another origin than the page (a trusted sibling embedding the button):
  // the caller's cookies go there too, in CORS mode (the server answers trusted origins).
  const credentials: RequestCredentials =
    new URL(base).origin === location.origin ? "same-origin" : "include";
  const postJSON = (path: string, body: unknown, keepalive = false) =>
    fetch(base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials,
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
    // start-call still on its way: end the call it creates once it answers.
    a.answer?.then(
      () => void (a.endToken && release(a, leaving)),
      () => undefined,
    );
    if (a.endToken) {
      const end_token = a.endToken;
      a.endToken = undefined;
      // Never block the hang-up on end-call. A failure that may pass (no answer, 5xx, 408,
      // 429) is retried with backoff, ~8 s in all (not once the page is gone); the last
      // failure is told: an `error` event (`end_failed`) and a note.
      let tries = 0;
      const endCall = (): Promise<unknown> =>
        postJSON("/end-call", { end_token }, true)
          .then((r) => {
            if (r.ok) return;
            if (r.status < 500 && r.status !== 408 && r.status !== 429) tries = 9;
            throw r.status;
          })
          .catch(() => {
            if (++tries < 5 && !leaving) return void setTimeout(endCall, 250 << tries);
            const message = text("text-end-failed");
            emit("error", { code: "end_failed", message, callId: a.callId });
            if (a === attempt) say(message);
          });
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

  /** Loads the call chunk; once there, its strings join ours and the views get its UI. */
  const chunk = () =>
    loadChunk().then((mod) => {
      Object.assign(TEXTS, mod.texts);
      emit("chunk", mod);
      return mod;
    });

  /** POST start-call; keeps the end_token of a call it creates, whatever happens next. */
  const startCall = async (a: Attempt, o: StartOptions): Promise<Answer> => {
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
    if (res.ok && typeof data?.end_token === "string") a.endToken = data.end_token;
    return { res, data };
  };

  const run = async (a: Attempt, mic: Promise<MediaStream>, o: StartOptions): Promise<void> => {
    try {
      try {
        a.stream = await mic;
      } catch (e) {
        throw ours(e) ? e : micError(e);
      }
      mark("mic");
      const loaded = chunk(); // started in the click; judged after start-call
      loaded.catch(() => undefined);
      a.mic = a.stream.getAudioTracks()[0];
      if (a.done) return void release(a);
      if (!a.mic) throw error("no_microphone");
      a.mic.enabled = !muted;

      const { res, data } = await (a.answer ??= startCall(a, o));
      const call = res.ok ? data : null;
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
      preconnect(call.server_url);

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
        text: (key) => opts[key] as string | undefined,
        on: {
          state: (s) => a === attempt && !a.done && setState(s),
          transcript: (t) => {
            if (a !== attempt || a.done) return;
            const i = transcripts.findIndex((x) => x.id === t.id);
            if (i < 0) transcripts.push(t);
            else transcripts[i] = t;
            if (transcripts.length > 100) transcripts.shift();
            emit("transcript", t);
          },
          agent: (s) => {
            if (a !== attempt || a.done) return;
            emit("agent", { state: (agentState = s) });
          },
          mic: (track) => {
            a.stream?.addTrack(track);
            a.mic = track;
          },
          notice: (n) => a === attempt && !a.done && say(n),
          ended: (reason, code) => void finish(a, reason, code ? error(code) : undefined),
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

  const start = (so: StartOptions = {}): Promise<void> => {
    if (attempt && !attempt.done) return attempt.promise ?? Promise.resolve();
    const audio = document.createElement("audio");
    const a: Attempt = (attempt = { done: false, audio });
    muted = false;
    lastError = undefined;
    transcripts.length = 0;
    agentState = "";
    since = 0;
    emit("reset");
    mark("click");
    setState("connecting");
    // Still inside the click: ask for the microphone and unlock audio playback.
    let mic: Promise<MediaStream>;
    if (so.signedOut) {
      mic = Promise.reject(error("signed_out"));
    } else if (!isSecureContext) {
      mic = Promise.reject(error("insecure_context"));
    } else if (!navigator.mediaDevices?.getUserMedia || typeof RTCPeerConnection === "undefined") {
      mic = Promise.reject(error("unsupported"));
    } else {
      mic = navigator.mediaDevices.getUserMedia({ audio: CONSTRAINTS });
      // Allowed already: ask for the call at once too (a refusal to come cannot bill a call).
      if (granted) (a.answer = startCall(a, so)).catch(() => undefined);
      audio.autoplay = true;
      audio.srcObject = new MediaStream();
      audio.play().catch(() => undefined);
      // Fetched while the person answers the permission prompt and start-call runs.
      chunk().catch(() => undefined);
    }
    return (a.promise = run(a, mic, so));
  };

  const setMuted = (m: boolean): void => {
    muted = !!m;
    if (attempt && !attempt.done) {
      if (attempt.mic) attempt.mic.enabled = !muted;
      attempt.session?.setMuted(muted);
    }
    emit("mute", { muted });
  };

  addEventListener("pagehide", () => {
    if (attempt) void finish(attempt, "page_hide");
  });

  return {
    start,
    end: () => (attempt ? finish(attempt, "hangup") : Promise.resolve()),
    setMuted,
    get state() {
      return state;
    },
    get muted() {
      return muted;
    },
    get error() {
      return lastError;
    },
    get callId() {
      return attempt?.callId;
    },
    get transcripts() {
      return transcripts.slice();
    },
    get attempt() {
      return attempt;
    },
    get agentState() {
      return agentState;
    },
    get since() {
      return since;
    },
    get notice() {
      return notice;
    },
  };
}
