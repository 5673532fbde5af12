/**
 * The phone build of the serving model: described by GET /v1/model, downloaded once in the background after
 * pairing (never part of the first load), checked against its sha256, kept in Cache Storage, replaced when the
 * server names another build; run with onnxruntime-web (WASM, one thread) on the photo prepared exactly as the
 * server prepares it (preprocess.js). onnxruntime-web itself (its .mjs and its 15 MB .wasm, under /app/ort/) is
 * loaded only when the model first runs, and the service worker keeps it (CacheFirst).
 */

import { leafVerdict, prepare, readOutputs } from './preprocess.js';

export const MODEL_CACHE = 'mhogo-model';

export async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

export class ModelStore {
  constructor({ api, settings, caches = globalThis.caches, origin = globalThis.location?.origin ?? 'http://localhost' }) {
    Object.assign(this, { api, settings, caches, origin });
  }

  /** The build this phone holds (its description), or null. */
  current() {
    return this.settings.get('model');
  }

  keyFor(manifest) {
    return new URL(manifest.url, this.origin).href;
  }

  /** Asks the server which build is serving; fetches and checks it when it is not the one held. Returns the
   * description of the build now held (null when none), and whether it changed. */
  async refresh() {
    let manifest;
    try {
      manifest = await this.api.model();
    } catch (error) {
      if (error.status === 404) return { manifest: await this.current(), updated: false }; // no phone build yet
      throw error;
    }
    const held = await this.current();
    if (held?.sha256 === manifest.sha256 && (await this.bytes(held))) return { manifest: held, updated: false };
    const bytes = await this.api.modelBytes(manifest.url);
    const sha = await sha256Hex(bytes);
    if (sha !== manifest.sha256) throw new Error(`model download damaged: sha256 ${sha.slice(0, 12)}, expected ${manifest.sha256.slice(0, 12)}`);
    const cache = await this.caches.open(MODEL_CACHE);
    await cache.put(this.keyFor(manifest), new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
    await this.settings.set('model', { ...manifest, storedAt: Date.now() });
    for (const request of await cache.keys()) { // the build it replaces
      if (request.url !== this.keyFor(manifest)) await cache.delete(request);
    }
    return { manifest, updated: true };
  }

  /** The held build's bytes, or null. */
  async bytes(manifest) {
    manifest ??= await this.current();
    if (!manifest) return null;
    const cache = await this.caches.open(MODEL_CACHE);
    const response = await cache.match(this.keyFor(manifest));
    return response ? response.arrayBuffer() : null;
  }
}

/** Runs the held build. `loadOrt()` gives the onnxruntime-web module (a dynamic import of /app/ort/ in the app). */
export class PhoneModel {
  constructor({ store, loadOrt, wasmPaths, now = () => performance.now() }) {
    Object.assign(this, { store, loadOrt, wasmPaths, now });
    this.loaded = null; // {sha, session, manifest}
    this.loading = null;
  }

  /** A session on the held build (made once per build); null when no build is held. */
  async session() {
    const manifest = await this.store.current();
    if (!manifest) return null;
    if (this.loaded?.sha === manifest.sha256) return this.loaded;
    this.loading ??= (async () => {
      const ort = await this.loadOrt();
      ort.env.wasm.numThreads = 1; // two need cross-origin isolation, and gave nothing on two cores
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmPaths = this.wasmPaths;
      const bytes = await this.store.bytes(manifest);
      if (!bytes) return null;
      const session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
      this.loaded = { sha: manifest.sha256, session, manifest, ort };
      return this.loaded;
    })().finally(() => { this.loading = null; });
    return this.loading;
  }

  /** The phone's answer on an upright RGB image ({width, height, data}), as the server's stages would give it:
   * {reason} (quality gate, leaf gate, leaf too small) or {label, confidence, probabilities}; with its timings. */
  async diagnose(image) {
    const started = this.now();
    const loaded = await this.session();
    if (!loaded) return null;
    const { session, manifest, ort } = loaded;
    const ready = prepare(image, manifest.preprocessing, manifest.quality_thresholds);
    const base = { modelVersion: manifest.model_version, precision: manifest.precision, stats: ready.stats };
    if (ready.reason) return { ...base, reason: ready.reason, latencyMs: this.now() - started };
    const size = manifest.preprocessing.input_size;
    const modelStarted = this.now();
    const outputs = await session.run({ pixels: new ort.Tensor('float32', ready.pixels, [1, size, size, 3]) });
    const modelMs = this.now() - modelStarted;
    const leaf = outputs.leaf_probability ? outputs.leaf_probability.data[0] : null;
    const answer = readOutputs(manifest.classes, Array.from(outputs.probabilities.data), leaf, manifest.leaf_gate?.threshold ?? null);
    const reason = leafVerdict(ready.stats, !answer.notLeaf, manifest.quality_thresholds);
    const latencyMs = this.now() - started;
    if (reason) return { ...base, reason, leafProbability: leaf, latencyMs, modelMs };
    return { ...base, label: answer.label, confidence: answer.confidence, probabilities: answer.probabilities, leafProbability: leaf, latencyMs, modelMs };
  }
}
