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
  transcript(t: Transcript): void;
  /**
   * The call ended from the other side. `lost` is true when it ended because the
   * connection failed rather than because the agent or the server closed it.
   */
  ended(reason: string, lost: boolean): void;
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

export interface CallChunk {
  create(params: CallParams): CallSession;
}

/** Name of the event the chunk dispatches on its own <script> element when it has run. */
export const CHUNK_EVENT = "oneinbox:chunk";
