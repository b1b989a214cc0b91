// Options from attributes: the script tag's `data-*`, and each <oneinbox-call>'s own
// (with or without `data-`), which override the script tag's.

import { TEXTS } from "./strings";

/** A mount's options: attribute names without `data-`, plus the call's variables. */
export interface Opts {
  [k: string]: string | Record<string, string> | undefined;
  variables: Record<string, string>;
}

/** `data-NAME`, else `NAME` (a <oneinbox-call> may use either), else undefined. */
export const attr = (el: Element, name: string): string | undefined =>
  el.getAttribute("data-" + name) ?? el.getAttribute(name) ?? undefined;

/** The element's options over the inherited ones (`data-var-NAME` become variables). */
export function readOptions(el: Element, inherit?: Opts): Opts {
  const o: Opts = { ...inherit, variables: { ...inherit?.variables } };
  const own: Record<string, string> = {};
  for (const a of Array.from(el.attributes)) {
    const k = a.name.replace(/^data-/, "");
    // `data-NAME` wins over `NAME` on the same element.
    if (k !== a.name || !(k in own)) own[k] = a.value;
  }
  for (const k in own) {
    if (k.startsWith("var-")) o.variables[k.slice(4).replace(/-/g, "_")] = own[k];
    else o[k] = own[k];
  }
  return o;
}

/** The string `key` (strings.ts), as the options override it. */
export const text = (o: Opts, key: string): string => (o[key] as string | undefined) || TEXTS[key] || key;

/** A boolean attribute: present and not "false". */
export const flag = (o: Opts, key: string) => o[key] !== undefined && o[key] !== "false";
