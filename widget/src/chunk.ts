// Loads the call chunk (livekit-client) from its content-hashed URL, once.

import { CHUNK_EVENT, type CallChunk } from "./protocol";

// Injected by build.mjs.
declare const __CHUNK__: string; // file name of the call chunk, e.g. "call-0123abcd.js"
declare const __CHUNK_SRI__: string; // its SRI hash, "sha384-…"

/** A function that loads the chunk on first call and returns the same promise after;
 *  a failed load is forgotten, so the next call retries. */
export function chunkLoader(base: string, script: HTMLScriptElement): () => Promise<CallChunk> {
  let chunk: Promise<CallChunk> | undefined;
  return () =>
    (chunk ??= new Promise<CallChunk>((resolve, reject) => {
      const s = document.createElement("script");
      s.src = base + "/" + __CHUNK__;
      s.integrity = __CHUNK_SRI__;
      // CORS mode without credentials, which integrity needs when the chunk is on another
      // origin than the page (the widget files answer any origin); same-origin, it changes nothing.
      s.crossOrigin = "anonymous";
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
}
