// The interface between the loader (widget.js) and the lazily loaded call chunk.
// Types only: nothing here produces code, so the loader never pulls in livekit-client.

/** A transcript segment as shown in the widget and sent in `oneinbox:transcript`. */
export interface Transcript {
  /** Segment id: later updates of the same segment carry the same id. */
  id: string;
  /** The segment's text so far (not a delta). */
  text: string;
  /** True once the segment will not change any more. */
  final: boolean;
  /** Who spoke: the AI agent or the person at this browser. */
  speaker: "agent" | "user";
}

/** What the call chunk tells the loader while a call runs. */
export interface CallEvents {
  /** The media connection dropped and is being re-established, or it is back. */
  state(state: "reconnecting" | "active"): void;
  /** A transcript update; at most one with `final` per segment, and none after it. */
  transcript(t: Transcript): void;
  /**
   * The call ended from the other side, or failed: `code` is the error's code
   * (`connection_lost`, `mic_lost`), absent when the agent or the server closed the call.
   */
  ended(reason: string, code?: string): void;
  /** The agent's state: `listening`, `thinking` or `speaking` (from its `lk.agent.state`
   *  attribute, else guessed from its audio level: `speaking` or `listening`). */
  agent(state: string): void;
  /** The call now sends this microphone track (another device was chosen, or the one in
   *  use went away); the loader owns it and stops it when the call ends. */
  mic(track: MediaStreamTrack): void;
  /** A passing remark for the person (e.g. the microphone was switched). */
  notice(text: string): void;
}

export interface CallParams {
  serverUrl: string;
  token: string;
  /** The microphone track the loader acquired; the loader owns and stops it. */
  mic: MediaStreamTrack;
  /** The media element the agent's audio plays through (unlocked in the click). */
  audio: HTMLAudioElement;
  muted: boolean;
  /** Passed to livekit-client's Room options when set. */
  singlePeerConnection?: boolean;
  /** A string the page overrides (data-text-*), else undefined: the chunk has defaults. */
  text(key: string): string | undefined;
  on: CallEvents;
}

export interface CallSession {
  /** Connects and publishes the microphone. Rejects with an Error whose `code` is set. */
  connect(): Promise<void>;
  /** Leaves the room. Safe to call at any time, also while connect() runs, and twice. */
  disconnect(): Promise<void>;
  setMuted(muted: boolean): void;
  /** The livekit-client Room, for tests and debugging only (unstable). */
  readonly room: unknown;
}

/** The parts of a view (loader) that the call's own UI (chunk) fills during a call. */
export interface ViewParts {
  root: ShadowRoot;
  panel: HTMLElement;
  /** The transcript live region (there, empty, from the start). */
  log: HTMLElement;
  mute: HTMLElement;
  /** The floating button (not an inline <oneinbox-call>). */
  floating: boolean;
  /** The mount's overrides of strings, else undefined. */
  text(key: string): string | undefined;
  /** Collapses an ended call's panel (not during a call). */
  dismiss(): void;
  /** The main button starts no call before this time (performance.now()); 0 unblocks. */
  block(until: number): void;
}

/** What the call's UI reads of the controller (controller.ts). */
export interface CallState {
  readonly state: string;
  readonly since: number;
  readonly error: { code: string; retryAfter?: number } | undefined;
}

/** The call's UI in one view: header (agent state, call time), mic level, microphone
 *  picker and transcript lines. Gets every controller event (controller.ts `Emit`). */
export interface CallUI {
  update(type: string, detail: unknown, ctl: CallState): void;
}

export interface CallChunk {
  create(params: CallParams): CallSession;
  ui(parts: ViewParts): CallUI;
  /** The chunk's strings (error messages of a call, the call UI's texts), by key. */
  texts: Record<string, string>;
}

/** Name of the event the chunk dispatches on its own <script> element when it has run. */
export const CHUNK_EVENT = "oneinbox:chunk";
