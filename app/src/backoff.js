/**
 * When to try again: exponential backoff with full jitter (each wait drawn uniformly from 0 to the capped
 * exponential), so a hundred phones that lost the same mast do not all come back in the same second; and the
 * server's Retry-After, which holds back a whole action (uploads, feedback or events), not one item.
 */

export const UPLOAD_BACKOFF = { base: 2_000, cap: 5 * 60_000 }; // one item the server failed on (5xx)
export const LINK_BACKOFF = { base: 2_000, cap: 60_000 }; // no answer at all: a tiny try a minute at most, so the
// photos go soon after the signal comes back even when no `online` event says so
export const POLL_BACKOFF = { base: 1_500, cap: 2 * 60_000, floor: 1_000 };

/** Milliseconds to wait before attempt `attempt + 1` (attempt 0 is the first retry): uniform in [floor, ceiling]. */
export function backoffDelay(attempt, { base, cap, floor = 0 }, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.max(floor, Math.floor(random() * ceiling));
}

/** Retry-After as milliseconds from now: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === '') return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/^[A-Za-z]{3}, /.test(text)) return null; // an HTTP date (IMF-fixdate) starts with the day's name
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}

/** Holds per action ("upload", "feedback", "events"), as absolute times; persisted by the caller through `toJSON`. */
export class Holds {
  constructor(saved = {}) {
    this.until = { ...saved };
  }

  hold(action, milliseconds, now = Date.now()) {
    this.until[action] = Math.max(this.until[action] ?? 0, now + milliseconds);
  }

  /** The time the action may run again, or 0 when it may run now. */
  heldUntil(action, now = Date.now()) {
    const until = this.until[action] ?? 0;
    return until > now ? until : 0;
  }

  toJSON() {
    return { ...this.until };
  }
}
