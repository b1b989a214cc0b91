// The view: one Shadow DOM per mount point (the floating <oneinbox-widget> or an
// <oneinbox-call>), rendering the controller's state. It holds no call state of its own.

import type { Controller, State } from "./controller";
import type { Opts } from "./options";
import type { Transcript } from "./protocol";

// Injected by build.mjs.
declare const __CSS__: string; // the widget's stylesheet (minified)
declare const __CSS_FILE__: string; // the same stylesheet as a file, for browsers without adoptedStyleSheets

export interface View {
  host: HTMLElement;
  /** A controller event (see controller.ts `Emit`). */
  update(type: string, detail?: unknown): void;
}

const STATUS: Partial<Record<State, string>> = {
  connecting: "Connecting…",
  active: "Connected",
  reconnecting: "Reconnecting…",
  ended: "Call ended",
};

let sheet: CSSStyleSheet | undefined;

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

/** Renders into `host`'s new shadow root; `base` is where the stylesheet file lives. */
export function mountView(host: HTMLElement, o: Opts, ctl: Controller, base: string, floating: boolean): View {
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
  const inCall = () => ctl.state === "connecting" || ctl.state === "active" || ctl.state === "reconnecting";
  button.addEventListener("click", () => {
    if (inCall()) void ctl.end();
    else ctl.start({ agent: o.agent as string | undefined, variables: o.variables }).catch(() => undefined);
  });
  mute.addEventListener("click", () => ctl.setMuted(!ctl.muted));

  const render = () => {
    const live = inCall();
    const state = ctl.state;
    const muted = ctl.muted;
    wrap.setAttribute("data-state", state);
    button.textContent = live ? label("label-end", "End call") : label("label", "Talk to AI");
    mute.hidden = !live;
    mute.textContent = muted ? label("label-unmute", "Unmute") : label("label-mute", "Mute");
    mute.setAttribute("aria-pressed", String(muted));
    status.textContent = STATUS[state] || "";
    alert.textContent = state === "error" && ctl.error ? ctl.error.message : "";
    log.hidden = !lines.size;
  };
  const transcript = (t: Transcript) => {
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
  };

  if (o.position) host.setAttribute("data-position", o.position as string);
  render();
  return {
    host,
    update(type, detail) {
      if (type === "transcript") transcript(detail as Transcript);
      else if (type === "reset") {
        lines.clear();
        log.replaceChildren();
        log.hidden = true;
      } else if (type === "state" || type === "mute") render();
    },
  };
}
