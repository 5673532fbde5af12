/**
 * mhogo's HTTP API as the app uses it: the device token on every call, RFC 9457 problem bodies read, and every
 * failure sorted into what the outbox must do about it (ApiError.kind):
 *
 *   network    no answer at all (no signal, a cut, a timeout): try again later, the same request
 *   revoked    401: this phone's token no longer works; stop sending and say so
 *   wait       429, 503, 507: the server asks to wait (Retry-After) before the whole action is tried again
 *   transient  408, 409, 425 and 5xx: try again later
 *   final      any other 4xx: the server's last word on this request; never send it again
 */

import { parseRetryAfter } from './backoff.js';

export class ApiError extends Error {
  constructor(kind, { status = 0, problem = null, retryAfterMs = null, cause } = {}) {
    super(problem?.detail || problem?.title || (status ? `HTTP ${status}` : `no answer (${cause?.message ?? kind})`));
    this.name = 'ApiError';
    this.kind = kind;
    this.status = status;
    this.problem = problem;
    this.retryAfterMs = retryAfterMs;
    if (cause) this.cause = cause;
  }
}

const WAIT = new Set([429, 503, 507]);
const TRANSIENT = new Set([408, 409, 425]);

/** What an HTTP status means for the request that got it. */
export function classify(status) {
  if (status === 401) return 'revoked';
  if (WAIT.has(status)) return 'wait';
  if (TRANSIENT.has(status) || status >= 500) return 'transient';
  if (status >= 400) return 'final';
  return 'ok';
}

/** An ApiError for a response, given its status, its Retry-After header and its body's text. */
export function errorFor(status, retryAfter, bodyText) {
  let problem = null;
  try {
    problem = bodyText ? JSON.parse(bodyText) : null;
  } catch {
    problem = { detail: String(bodyText).slice(0, 200) };
  }
  const kind = classify(status);
  const wait = parseRetryAfter(retryAfter);
  return new ApiError(kind, { status, problem, retryAfterMs: kind === 'wait' ? (wait ?? 30_000) : wait });
}

export function createApi({ base = '', getToken, fetchImpl = (...args) => globalThis.fetch(...args), timeoutMs = 60_000 }) {
  async function request(method, path, { json, headers = {}, auth = true, timeout = timeoutMs, raw = false } = {}) {
    const sent = { ...headers };
    if (auth) sent.Authorization = `Bearer ${await getToken()}`;
    if (json !== undefined) sent['Content-Type'] = 'application/json';
    const controller = new AbortController();
    const timer = timeout ? setTimeout(() => controller.abort(new Error('timed out')), timeout) : null;
    let response;
    try {
      response = await fetchImpl(base + path, {
        method, headers: sent, body: json === undefined ? undefined : JSON.stringify(json),
        signal: controller.signal, cache: 'no-store', credentials: 'omit',
      });
      if (!response.ok) {
        throw errorFor(response.status, response.headers.get('Retry-After'), await response.text().catch(() => ''));
      }
      if (raw) return response.arrayBuffer();
      return response.status === 204 ? null : await response.json();
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw new ApiError('network', { cause: error });
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  return {
    request,
    pair: (code) => request('POST', '/v1/pairings', { json: { code }, auth: false }),
    jobs: (before) => request('GET', `/v1/jobs?limit=20${before ? `&before=${encodeURIComponent(before)}` : ''}`),
    job: (jobId) => request('GET', `/v1/jobs/${encodeURIComponent(jobId)}`),
    feedback: (jobId, label, key) =>
      request('POST', `/v1/jobs/${encodeURIComponent(jobId)}/feedback`, { json: { label }, headers: { 'Idempotency-Key': key } }),
    events: (events) => request('POST', '/v1/events', { json: events }),
    model: () => request('GET', '/v1/model'),
    // 10 MB over 2G takes minutes: no timeout of ours on the model's bytes.
    modelBytes: (url) => request('GET', url, { raw: true, timeout: 0 }),
  };
}
