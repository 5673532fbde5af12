import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ApiError, classify, createApi, errorFor } from '../src/api.js';

test('statuses are sorted into what the outbox does', () => {
  assert.equal(classify(401), 'revoked');
  for (const status of [429, 503, 507]) assert.equal(classify(status), 'wait');
  for (const status of [408, 409, 425, 500, 502]) assert.equal(classify(status), 'transient');
  for (const status of [400, 403, 404, 410, 413, 415, 422]) assert.equal(classify(status), 'final');
  assert.equal(classify(202), 'ok');
});

test('a problem body is read; a wait without Retry-After still waits', () => {
  const error = errorFor(429, '5', JSON.stringify({ type: 'about:blank', title: 'Too Many', status: 429, detail: 'slow down' }));
  assert.equal(error.kind, 'wait');
  assert.equal(error.retryAfterMs, 5000);
  assert.equal(error.message, 'slow down');
  assert.equal(errorFor(503, null, '').retryAfterMs, 30_000);
  assert.equal(errorFor(500, null, '<html>oops').problem.detail, '<html>oops');
});

function fakeFetch(responses, calls = []) {
  return async (url, init) => {
    calls.push({ url, init });
    const next = responses.shift();
    if (next instanceof Error) throw next;
    return new Response(next.body ?? null, { status: next.status, headers: next.headers });
  };
}

test('every call carries the device token; pairing does not', async () => {
  const calls = [];
  const api = createApi({
    getToken: async () => 'tok', fetchImpl: fakeFetch([
      { status: 201, body: '{"token":"t","device_id":3,"device_name":"amina"}' },
      { status: 200, body: '{"job_id":"j1","status":"queued"}' },
    ], calls),
  });
  assert.equal((await api.pair('c0de')).device_id, 3);
  assert.equal(calls[0].init.headers.Authorization, undefined);
  assert.equal(JSON.parse(calls[0].init.body).code, 'c0de');
  assert.equal((await api.job('j1')).status, 'queued');
  assert.equal(calls[1].init.headers.Authorization, 'Bearer tok');
});

test('no answer is a network error; a 401 is revoked; feedback sends its key', async () => {
  const calls = [];
  const api = createApi({
    getToken: async () => 'tok', fetchImpl: fakeFetch([
      new TypeError('Failed to fetch'),
      { status: 401, body: '{"status":401,"detail":"revoked","reason":"revoked"}' },
      { status: 202, body: '{"event_id":"e"}' },
    ], calls),
  });
  await assert.rejects(api.job('j'), (e) => e instanceof ApiError && e.kind === 'network');
  await assert.rejects(api.job('j'), (e) => e.kind === 'revoked' && e.problem.reason === 'revoked');
  await api.feedback('j', 'cmd', 'k-1');
  assert.equal(calls[2].init.headers['Idempotency-Key'], 'k-1');
  assert.deepEqual(JSON.parse(calls[2].init.body), { label: 'cmd' });
});
