// The public JS API, `window.OneInbox` (docs/widget.md "JS API").

import type { Controller, StartOptions } from "./controller";
import type { CallChunk } from "./protocol";

export interface OneInboxAPI {
  start(o?: StartOptions): Promise<void>;
  end(): Promise<void>;
  setMuted(m: boolean): void;
  readonly state: string;
  readonly muted: boolean;
  readonly error: { code: string; message: string } | undefined;
  readonly callId: string | undefined;
  readonly transcripts: unknown[];

  /** Unstable, for tests and debugging: the current or last call's internals. */
  readonly _debug: object;
}

/** `signedOut`: the script tag declares the visitor signed out (`data-signed-out`). */
export function publicApi(ctl: Controller, loadChunk: () => Promise<CallChunk>, signedOut: boolean): OneInboxAPI {
  return {
    start: (o) => ctl.start({ signedOut, ...o }),
    end: ctl.end,
    setMuted: ctl.setMuted,
    get state() {
      return ctl.state;
    },
    get muted() {
      return ctl.muted;
    },
    get error() {
      const e = ctl.error;
      return e && { code: e.code, message: e.message };
    },
    get callId() {
      return ctl.callId;
    },
    get transcripts() {
      return ctl.transcripts;
    },
    _debug: {
      get mic() {
        return ctl.attempt?.mic;
      },
      get audio() {
        return ctl.attempt?.audio;
      },
      get room() {
        return ctl.attempt?.room;
      },
      loadChunk,
    },
  };
}
