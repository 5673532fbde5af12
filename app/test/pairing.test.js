import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ApiError } from '../src/api.js';
import { Outbox } from '../src/outbox.js';
import { pair, syncHistory, takePairingCode } from '../src/pairing.js';
import { openStore, Settings } from '../src/store.js';

let n = 0;

test('the code is taken from the fragment and out of the address bar at once', () => {
  const replaced = [];
  const history = { state: null, replaceState: (state, title, url) => replaced.push(url) };
  assert.equal(takePairingCode({ hash: '#pair=Ab3-x_9', pathname: '/app/', search: '' }, history), 'Ab3-x_9');
  assert.deepEqual(replaced, ['/app/']);
  assert.equal(takePairingCode({ hash: '', pathname: '/app/', search: '' }, history), null);
  assert.equal(takePairingCode({ hash: '#other=1', pathname: '/app/', search: '' }, history), null);
  assert.equal(replaced.length, 1);
});

test('pairing keeps the token; a used link says so; no network keeps the code for later', async () => {
  const db = await openStore(`pairing-test-${++n}`);
  const settings = new Settings(db);
  await settings.set('revoked', true);
  const api = { pair: async (code) => ({ token: `tok-${code}`, device_id: 4, device_name: 'amina' }) };
  assert.equal((await pair({ code: 'c1', api, settings })).state, 'paired');
  assert.equal(await settings.get('token'), 'tok-c1');
  assert.equal((await settings.get('device')).name, 'amina');
  assert.equal(await settings.get('revoked'), undefined, 'a new link undoes a revocation');

  const used = { pair: async () => { throw new ApiError('final', { status: 410 }); } };
  assert.equal((await pair({ code: 'c2', api: used, settings })).state, 'used');
  assert.equal(await settings.get('token'), 'tok-c1');

  const offline = { pair: async () => { throw new ApiError('network'); } };
  assert.equal((await pair({ code: 'c3', api: offline, settings })).state, 'later');
  assert.equal(await settings.get('pairing_code'), 'c3');
  db.close();
});

test('a reinstalled app gets its history back, page after page', async () => {
  const db = await openStore(`pairing-test-${++n}`);
  const outbox = new Outbox(db);
  const pages = {
    '': { jobs: [{ job_id: 'j3', status: 'classified', result: { label: 'cmd' }, idempotency_key: 'k3', created_at: '2026-12-03T00:00:00Z' }], next: 'c1' },
    c1: { jobs: [{ job_id: 'j2', status: 'rejected', rejection: { reason: 'blurry' }, idempotency_key: 'k2', created_at: '2026-12-02T00:00:00Z' }], next: null },
  };
  const asked = [];
  const api = { jobs: async (before) => { asked.push(before); return pages[before ?? '']; } };
  assert.equal(await syncHistory({ api, outbox }), 2);
  assert.deepEqual(asked, [null, 'c1']);
  assert.deepEqual((await outbox.all()).map((p) => [p.jobId, p.state]), [['j3', 'diagnosed'], ['j2', 'rejected']]);
  assert.equal(await syncHistory({ api, outbox }), 0);
  db.close();
});
