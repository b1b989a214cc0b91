// The view: one Shadow DOM per mount point (the floating <oneinbox-widget> or an
// <oneinbox-call>), rendering the controller's state. Its own state is only what a view
// needs: when the state last changed (the double-click guard), until when a new call is
// blocked (rate limit), and whether the person dismissed the last call's panel.
//
//   .w [part=widget]
//     .r  the row: .b main button [part=button], .m Mute [part=mute]
//     .p  the panel [part=panel]: status, error, sign-in link, transcript. Its live regions
//         are there from the start; an empty panel is visually hidden, not removed.
//
// Once the call chunk is loaded, its UI (callui.ts) adds the agent's state, the call time,
// the mic level, the microphone picker, the transcript's lines, Close, the retry countdown
// and the panel collapsing by itself.

import type { Controller, State } from "./controller";
import { flag, type Opts, text } from "./options";
import type { CallChunk, CallUI } from "./protocol";
import { errorKey } from "./strings";

// Injected by build.mjs.
declare const __CSS__: string; // the widget's stylesheet (minified)
declare const __CSS_FILE__: string; // both stylesheets as a file, for browsers without adoptedStyleSheets

export interface View {
  host: HTMLElement;
  /** A controller event (see controller.ts `Emit`). */
  update(type: string, detail?: unknown): void;
}

/** Clicks this soon after a state change are ignored (the second click of a double click). */
const GUARD_MS = 600;

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

const IN_CALL: State[] = ["connecting", "active", "reconnecting"];

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
  for (const k of ["position", "theme"]) if (o[k]) host.setAttribute("data-" + k, o[k] as string);
  const t = (key: string) => text(o, key);
  const signedOut = flag(o, "signed-out");
  const signIn = o["sign-in-url"] as string | undefined;

  const wrap = el("div", "w", root, { part: "widget" });
  wrap.hidden = signedOut && o["signed-out"] === "hide";
  const row = el("div", "r", wrap);
  // Both labels share one grid cell, so the button keeps its width from state to state.
  const button = el("button", "b", row, { type: "button", part: "button" });
  const labels = el("span", "l", button);
  const talk = el("span", "", labels);
  const hang = el("span", "", labels);
  talk.textContent = t("label");
  hang.textContent = t("label-end");
  // A constant name; its state is aria-pressed.
  const mute = el("button", "m", row, { type: "button", part: "mute", "aria-pressed": "false" });
  el("span", "", mute).textContent = t("label-mute");

  const panel = el("div", "p", wrap, { part: "panel" });
  const status = el("p", "s", panel, { part: "status", role: "status" });
  const alert = el("p", "e", panel, { part: "error", role: "alert" });
  const link = el("a", "k", panel, { part: "sign-in" });
  link.textContent = t("text-sign-in");
  if (signIn) link.href = signIn;
  const log = el("div", "t", panel, {
    part: "transcript",
    role: "log",
    "aria-live": "polite",
    "aria-label": t("text-transcript"),
  });
  let ui: CallUI | undefined;

  let changed = -GUARD_MS; // when the state last changed (performance.now())
  let muteShown = 0; // when Mute appeared
  let blocked = 0; // rate-limited: no new call before this
  let dismissed = false;
  const inCall = () => IN_CALL.includes(ctl.state);

  button.addEventListener("click", (e) => {
    // The second click of a double click, or one right after a state change, is not meant
    // for what the button now shows.
    if (e.detail > 1 || performance.now() - changed < GUARD_MS || blocked > performance.now()) return;
    if (inCall()) void ctl.end();
    else ctl.start({ agent: o.agent as string | undefined, variables: o.variables, signedOut }).catch(() => undefined);
  });
  mute.addEventListener("click", (e) => {
    if (e.detail > 1 || performance.now() - muteShown < GUARD_MS) return;
    ctl.setMuted(!ctl.muted);
  });

  const render = () => {
    const state = ctl.state;
    const live = inCall();
    const err = state === "error" && !dismissed ? ctl.error : undefined;
    const focused = root.activeElement as HTMLElement | null;
    wrap.setAttribute("data-state", state);
    talk.toggleAttribute("data-off", live);
    hang.toggleAttribute("data-off", !live);
    if (mute.hidden === live) muteShown = performance.now();
    mute.hidden = !live;
    mute.setAttribute("aria-pressed", String(ctl.muted));
    button.setAttribute("aria-disabled", String(blocked > performance.now()));
    panel.classList.toggle("z", state === "idle" || dismissed);
    status.textContent = dismissed || state === "idle" ? "" : ctl.notice || (err ? "" : t("text-" + state));
    alert.textContent = err ? (o[errorKey(err.code)] as string | undefined) || err.message : "";
    link.hidden = !(signIn && err && (err.code === "signed_out" || err.status === 401));
    if (dismissed) log.replaceChildren();
    // Focus stays on a control that is still there: else the main button takes it.
    if (focused && focused !== button && !focused.getClientRects().length) button.focus();
  };

  render();
  return {
    host,
    update(type, detail) {
      if (type === "chunk") {
        ui ??= (detail as CallChunk).ui({
          root,
          panel,
          log,
          mute,
          floating,
          text: (k) => o[k] as string | undefined,
          dismiss() {
            if (inCall() || dismissed) return;
            dismissed = true;
            render();
          },
          block(until) {
            blocked = until;
            render();
          },
        });
        ui.update("state", { state: ctl.state }, ctl); // what happened before it came
      }
      if (type === "state") {
        changed = performance.now();
        dismissed = false;
        blocked = 0;
      }
      ui?.update(type, detail, ctl);
      if (type !== "transcript") render();
      if (type === "reset") log.replaceChildren();
    },
  };
}
