// Options from data-* attributes: the script tag's, and each <oneinbox-call>'s own.

/** A mount's options: the attribute names without `data-`, plus the call's variables. */
export interface Opts {
  [k: string]: string | Record<string, string> | undefined;
  variables: Record<string, string>;
}

/** `data-NAME`, else `NAME` (a <oneinbox-call> may use either), else undefined. */
export const attr = (el: Element, name: string): string | undefined =>
  el.getAttribute("data-" + name) ?? el.getAttribute(name) ?? undefined;

const KEYS = ["agent", "label", "label-end", "label-mute", "label-unmute", "position"];

/** The element's options over the inherited ones (`data-var-NAME` become variables). */
export function readOptions(el: Element, inherit?: Opts): Opts {
  const variables: Record<string, string> = { ...inherit?.variables };
  for (const a of Array.from(el.attributes)) {
    const m = /^(?:data-)?var-(.+)$/.exec(a.name);
    if (m) variables[m[1].replace(/-/g, "_")] = a.value;
  }
  const o: Opts = { ...inherit, variables };
  for (const k of KEYS) {
    const v = attr(el, k);
    if (v) o[k] = v;
  }
  return o;
}
