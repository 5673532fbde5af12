/**
 * The farmer's words, from the one catalogue (schemas/catalogue/<language>.json, copied to i18n/ by the build and
 * kept by the service worker): which language to speak, and a key's text in it, with English behind any gap.
 */

export const SOURCE = 'en';

/** "sw-TZ" -> "sw"; "rw_RW" -> "rw". */
export function primary(tag) {
  return String(tag || '').toLowerCase().split(/[-_]/)[0];
}

/** The farmer's own choice if still offered, else the first of the phone's languages that the app has, else English. */
export function chooseLanguage(saved, preferred, supported) {
  if (saved && supported.includes(saved)) return saved;
  for (const tag of preferred || []) {
    const code = primary(tag);
    if (supported.includes(code)) return code;
  }
  return supported.includes(SOURCE) ? SOURCE : supported[0];
}

/** "{n} waiting" with {n: 3} -> "3 waiting"; an unknown placeholder stays as it is. */
export function format(template, params = {}) {
  return template.replace(/\{([a-z_]+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** A language's strings, with `_meta` set apart. */
export function splitCatalogue(json) {
  const { _meta: meta = {}, ...strings } = json;
  return { meta, strings };
}

export class Catalogue {
  constructor(language, strings, fallback = {}) {
    this.language = language;
    this.strings = strings;
    this.fallback = fallback;
  }

  has(key) {
    return key in this.strings || key in this.fallback;
  }

  /** The key's text in this language, else in English, else the key itself (never a blank on the screen). */
  t(key, params) {
    const text = this.strings[key] ?? this.fallback[key] ?? key;
    return params ? format(text, params) : text;
  }
}

/** Loads a language (and English behind it) with `fetchJson(url)`; a language that cannot be had falls back to English. */
export async function loadCatalogue(language, fetchJson) {
  const source = splitCatalogue(await fetchJson(`i18n/${SOURCE}.json`)).strings;
  if (language === SOURCE) return new Catalogue(SOURCE, source);
  try {
    return new Catalogue(language, splitCatalogue(await fetchJson(`i18n/${language}.json`)).strings, source);
  } catch {
    return new Catalogue(SOURCE, source);
  }
}
