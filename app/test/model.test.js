// The on-device model's download (checked, kept, replaced) and its run, with a fake Cache Storage and a fake ort.
import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { ApiError } from '../src/api.js';
import { ModelStore, PhoneModel, sha256Hex } from '../src/model.js';
import { openStore, Settings } from '../src/store.js';

class FakeCaches {
  constructor() { this.stores = new Map(); }
  async open(name) {
    if (!this.stores.has(name)) {
      const entries = new Map();
      this.stores.set(name, {
        entries,
        put: async (key, response) => { entries.set(key, await response.arrayBuffer()); },
        match: async (key) => (entries.has(key) ? new Response(entries.get(key)) : undefined),
        keys: async () => [...entries.keys()].map((url) => ({ url })),
        delete: async (request) => entries.delete(request.url),
      });
    }
    return this.stores.get(name);
  }
}

const bytesOf = (text) => new TextEncoder().encode(text).buffer;
const shaOf = (buffer) => createHash('sha256').update(Buffer.from(buffer)).digest('hex');
let n = 0;

function manifestFor(buffer, version) {
  const sha = shaOf(buffer);
  return {
    model_version: version, sha256: sha, size_bytes: buffer.byteLength, url: `/v1/model/${sha}.onnx`, precision: 'int8',
    classes: ['cbb', 'cbsd', 'cgm', 'cmd', 'healthy'],
    preprocessing: { work_size: 32, input_size: 16, mean: 127, std: 128, target_luma: 100, max_gamma_lift: 0.6 },
    quality_thresholds: { min_side_px: 8, dark_luma: 45, bright_luma: 200, bright_clipped_fraction: 0.25, blur_laplacian_var: 35, min_green_fraction: 0.15 },
    leaf_gate: { threshold: 0.1 },
  };
}

async function setUp() {
  const db = await openStore(`model-test-${++n}`);
  const settings = new Settings(db);
  const server = { builds: new Map(), serving: null, downloads: 0, damage: false };
  const api = {
    model: async () => { if (!server.serving) throw new ApiError('final', { status: 404 }); return server.serving; },
    modelBytes: async (url) => {
      server.downloads++;
      const bytes = server.builds.get(url).slice(0);
      if (server.damage) new Uint8Array(bytes)[0] ^= 1;
      return bytes;
    },
  };
  const serve = (text, version) => {
    const buffer = bytesOf(text);
    const manifest = manifestFor(buffer, version);
    server.builds.set(manifest.url, buffer);
    server.serving = manifest;
    return manifest;
  };
  const caches = new FakeCaches();
  return { db, settings, server, serve, caches, store: new ModelStore({ api, settings, caches, origin: 'http://phone' }) };
}

test('sha256 in hex, as the server writes it', async () => {
  assert.equal(await sha256Hex(bytesOf('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('no build served: nothing held, nothing fetched', async () => {
  const { db, store, server } = await setUp();
  assert.deepEqual(await store.refresh(), { manifest: undefined, updated: false });
  assert.equal(server.downloads, 0);
  db.close();
});

test('the build is fetched once, checked and kept; another build replaces it', async () => {
  const { db, store, server, serve, caches } = await setUp();
  const first = serve('model one', 'v1');
  assert.equal((await store.refresh()).updated, true);
  assert.equal((await store.refresh()).updated, false);
  assert.equal(server.downloads, 1, 'not fetched again while it is the one served');
  assert.equal(new TextDecoder().decode(await store.bytes()), 'model one');
  assert.equal((await store.current()).sha256, first.sha256);

  serve('model two', 'v2');
  assert.equal((await store.refresh()).updated, true);
  assert.equal((await store.current()).model_version, 'v2');
  assert.equal((await caches.open('mhogo-model')).entries.size, 1, 'the old build is gone');
  db.close();
});

test('a damaged download is refused and the held build stays', async () => {
  const { db, store, server, serve } = await setUp();
  serve('model one', 'v1');
  await store.refresh();
  serve('model two', 'v2');
  server.damage = true;
  await assert.rejects(store.refresh(), /sha256/);
  assert.equal((await store.current()).model_version, 'v1');
  db.close();
});

test('the phone model prepares the photo as the server does and reads the graph outputs', async () => {
  const { db, store, serve } = await setUp();
  serve('model one', 'v1');
  await store.refresh();
  const runs = [];
  const ort = {
    env: { wasm: {} },
    Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } },
    InferenceSession: {
      create: async (bytes) => ({
        run: async (feeds) => {
          runs.push(feeds.pixels);
          return { probabilities: { data: Float32Array.of(0.05, 0.05, 0.1, 0.7, 0.1) }, leaf_probability: { data: Float32Array.of(runs.length === 1 ? 0.9 : 0.01) } };
        },
      }),
    },
  };
  let loads = 0;
  const model = new PhoneModel({ store, loadOrt: async () => { loads++; return ort; }, wasmPaths: '/app/ort/' });
  const green = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 3) };
  for (let i = 0; i < green.data.length; i += 3) { // a sharp green checkerboard
    const on = ((i / 3) % 40 + Math.floor(i / 3 / 40)) % 2;
    green.data.set(on ? [40, 160, 50] : [90, 220, 80], i);
  }
  const answer = await model.diagnose(green);
  assert.equal(answer.label, 'cmd');
  assert.equal(answer.modelVersion, 'v1');
  assert.deepEqual(runs[0].dims, [1, 16, 16, 3]);
  assert.ok(runs[0].data instanceof Float32Array);
  assert.equal(ort.env.wasm.numThreads, 1);
  assert.equal(ort.env.wasm.wasmPaths, '/app/ort/');
  assert.equal((await model.diagnose(green)).reason, 'not_cassava_leaf', 'below the leaf gate threshold');
  const dark = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 3).fill(10) };
  assert.equal((await model.diagnose(dark)).reason, 'too_dark');
  assert.equal(runs.length, 2, 'the quality gate answers before the model');
  assert.equal(loads, 1, 'one session per build');
  db.close();
});

test('no build held: the phone has no answer of its own (the server will give one)', async () => {
  const { db, store } = await setUp();
  const model = new PhoneModel({ store, loadOrt: async () => { throw new Error('not loaded'); }, wasmPaths: '/app/ort/' });
  assert.equal(await model.diagnose({ width: 1, height: 1, data: new Uint8Array(3) }), null);
  db.close();
});
