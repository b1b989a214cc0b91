// The call's life cycle: one call at a time per page. A small state machine
//
//   idle -> connecting -> active <-> reconnecting
//               \            \            \
//                +-> ended | error  <------+
//
// owning the microphone, start-call, the call chunk's session, end-call, mute and the
// transcript. It knows nothing of the DOM views: it reports every change through `emit`.

import type { CallChunk, CallSession, Transcript } from "./protocol";

export type State = "idle" | "connecting" | "active" | "reconnecting" | "ended" | "error";

export interface StartOptions {
  /** Agent name (one of the server's `agents`). */
  agent?: string;
  /** Variables the server allows the browser to set (`client_variables`). */
  variables?: Record<string, string>;
  /** Passed to livekit-client's Room options (false forces dual peer connections). */
  singlePeerConnection?: boolean;
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
 *   `error` `{code, message, status?, serverCode?, retryAfter?}`, `ended` `{reason, callId, error?}`
 */
export type Emit = (type: string, detail?: unknown) => void;

export interface Controller {
  readonly state: State;
  readonly muted: boolean;
  readonly error: WidgetError | undefined;
  readonly callId: string | undefined;
  /** The current call's transcript segments (a copy). */
  readonly transcripts: Transcript[];
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

const error = (code: string, extra?: Partial<WidgetError>, message?: string): WidgetError =>
  Object.assign(new Error(message || MESSAGES[code] || code), { code }, extra);

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

/** `base`: where the routes live ({prefix}); `loadChunk`: fetches the call chunk. */
export function createController(base: string, loadChunk: () => Promise<CallChunk>, emit: Emit): Controller {
  let state: State = "idle";
  let muted = false;
  let attempt: Attempt | undefined;
  let lastError: WidgetError | undefined;
  const transcripts: Transcript[] = [];

  const setState = (next: State) => {
    if (next === state) return;
    const previous = state;
    state = next;
    emit("state", { state: next, previous });
  };

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
    emit("reset");
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
  };
}
