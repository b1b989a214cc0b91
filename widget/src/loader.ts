// widget.js: the small loader every page downloads. It wires three parts together:
//
//   controller.ts  the call's life cycle (microphone, start-call, end-call, states, events)
//   view.ts        the DOM: the floating button and <oneinbox-call>, one Shadow DOM each
//   api.ts         window.OneInbox
//
// and loads the call chunk holding livekit-client (call.ts) only when a call starts.

import { publicApi } from "./api";
import { chunkLoader } from "./chunk";
import { createController } from "./controller";
import { attr, flag, readOptions } from "./options";
import { mountView, type View } from "./view";

const INTERNAL = ["reset", "chunk", "notice"];

function main(): void {
  const w = window as unknown as { OneInbox?: object };
  if (w.OneInbox) return; // included twice: the first copy wins
  const script =
    (document.currentScript as HTMLScriptElement | null) ??
    document.querySelector<HTMLScriptElement>('script[src*="/widget.js"]');
  if (!script) return;
  // The routes live next to this script: {prefix}/widget.js -> {prefix}
  const base = script.src.replace(/[?#].*$/, "").replace(/\/[^/]*$/, "");
  const scriptOpts = readOptions(script);
  const loadChunk = chunkLoader(base, script);

  // Every controller event goes to the views first (they render), then out as DOM
  // events on each widget element and on document (`reset` is internal).
  const views = new Set<View>();
  const ctl = createController(base, loadChunk, (type, detail) => {
    for (const v of views) v.update(type, detail);
    if (INTERNAL.includes(type)) return;
    for (const target of [...Array.from(views, (v) => v.host), document]) {
      target.dispatchEvent(new CustomEvent("oneinbox:" + type, { detail }));
    }
  }, scriptOpts);

  const mode = attr(script, "mount") || "auto";
  if (mode !== "manual") {
    customElements.get("oneinbox-call") ||
      customElements.define(
        "oneinbox-call",
        class extends HTMLElement {
          v?: View;
          connectedCallback() {
            this.v ??= mountView(this, readOptions(this, scriptOpts), ctl, base, false);
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
        views.add(mountView(host, scriptOpts, ctl, base, true));
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

  w.OneInbox = publicApi(ctl, loadChunk, flag(scriptOpts, "signed-out"));
  document.dispatchEvent(new CustomEvent("oneinbox:ready", { detail: w.OneInbox }));
}

main();
