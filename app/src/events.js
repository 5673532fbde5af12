/**
 * What the phone reports about itself (POST /v1/events), in the shape the server takes: one of the fixed kinds of
 * schemas/tasks.py ClientEventKind, and at most 16 flat pairs of a short lower-case key and a number, a short text,
 * true, false or null. Events wait in the outbox and go in batches.
 */

export const KINDS = [
  'upload_retried', 'upload_resumed', 'upload_refused', 'told_to_wait', 'feedback_retried',
  'offline_answer_shown', 'offline_answer_replaced', 'app_error',
];
const KEY = /^[a-z][a-z0-9_]{0,39}$/;
const MAX_ITEMS = 16;

/** Data the server accepts, whatever was given: bad keys dropped, texts cut to 200, objects turned to text. */
export function cleanData(data = {}) {
  const clean = {};
  for (const [key, value] of Object.entries(data)) {
    if (Object.keys(clean).length >= MAX_ITEMS) break;
    if (!KEY.test(key) || value === undefined) continue;
    if (value === null || typeof value === 'boolean') clean[key] = value;
    else if (typeof value === 'number') clean[key] = Number.isFinite(value) ? Math.round(value * 1000) / 1000 : null;
    else clean[key] = String(value).slice(0, 200);
  }
  return clean;
}

export class Events {
  constructor(outbox) {
    this.outbox = outbox;
  }

  /** Never throws: reporting must not break what it reports on. */
  async record(kind, data, jobId = null) {
    if (!KINDS.includes(kind)) throw new Error(`not an event kind the server takes: ${kind}`);
    try {
      return await this.outbox.addEvent(kind, cleanData(data), jobId);
    } catch (error) {
      console.warn('mhogo: event not kept', kind, error);
      return null;
    }
  }

  error(where, error, jobId = null) {
    return this.record('app_error', { where, message: String(error?.message ?? error) }, jobId);
  }
}
