/**
 * The app's moving parts put together: storage, the outbox and its sender, pairing, the catalogue, the on-device
 * model; and the state the screens draw (App.state), changed only here and announced to subscribers.
 */

import { Upload } from 'tus-js-client';

import { createApi } from './api.js';
import { Events } from './events.js';
import { chooseLanguage, loadCatalogue } from './i18n.js';
import { ModelStore, PhoneModel } from './model.js';
import { FINAL, Outbox, REFUSED } from './outbox.js';
import { pair, syncHistory } from './pairing.js';
import { decodeRGB, downscale } from './photo.js';
import { Sender } from './sender.js';
import { openStore, Settings } from './store.js';
import { OutboxUrlStorage, uploadPhoto } from './upload.js';

const MODEL_CHECK_MS = 6 * 3600_000;
const MODEL_RETRY_MS = 10 * 60_000;
const MAX_ERRORS_REPORTED = 20;

/** Resolves once a service worker controls the page (at once when one does, or none can), or after `timeoutMs`. */
function serviceWorkerInCharge(timeoutMs = 15_000) {
  const workers = navigator.serviceWorker;
  if (!workers || workers.controller) return Promise.resolve();
  return new Promise((resolve) => {
    workers.addEventListener('controllerchange', resolve, { once: true });
    setTimeout(resolve, timeoutMs);
  });
}

export class App {
  constructor({ base, languages, origin = location.origin }) {
    this.base = base; // the app's own URL, ".../app/"
    this.origin = origin;
    this.languages = languages; // [{code, name, flag, checked}] from the catalogue, at build time
    this.listeners = new Set();
    this.state = {
      booted: false, language: 'en', catalogue: null, pairing: 'unpaired', device: null, photos: [], waiting: 0,
      selected: null, sender: {}, model: 'none', persisted: null, busyCapturing: false, pairNotice: null,
    };
    this.modelAttempt = Promise.resolve(false);
    this.errorsReported = 0;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(change) {
    this.state = { ...this.state, ...change };
    for (const listener of this.listeners) listener(this.state);
  }

  t(key, params) {
    return this.state.catalogue ? this.state.catalogue.t(key, params) : key;
  }

  fetchJson = async (path) => {
    const response = await fetch(new URL(path, this.base));
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  };

  async boot({ pairingCode }) {
    this.db = await openStore();
    this.settings = new Settings(this.db);
    this.outbox = new Outbox(this.db);
    this.events = new Events(this.outbox);
    this.api = createApi({ base: this.origin, getToken: () => this.settings.get('token') });
    this.modelStore = new ModelStore({ api: this.api, settings: this.settings, origin: this.origin });
    this.phoneModel = new PhoneModel({
      store: this.modelStore,
      wasmPaths: new URL('ort/', this.base).href,
      loadOrt: () => import(/* the copy under /app/ort/, kept by the service worker */ new URL('ort/ort.wasm.min.mjs', this.base).href),
    });
    this.sender = new Sender({
      outbox: this.outbox, settings: this.settings, api: this.api, events: this.events,
      upload: (photo, blob, token) => uploadPhoto({
        Upload, endpoint: new URL('/v1/uploads', this.origin).href, token, photo, blob,
        urlStorage: new OutboxUrlStorage(this.outbox),
      }),
      onChange: () => this.refresh(),
    });

    await this.setLanguage((await this.settings.get('language')) ?? null, { remember: false });
    await this.readPairing();
    await this.refresh();
    this.set({ booted: true, model: (await this.modelStore.current()) ? 'ready' : 'none' });
    this.dropOldOrt().catch(() => {});

    const code = pairingCode ?? (await this.settings.get('pairing_code'));
    if (code) await this.pairWith(code);
    this.sender.start().catch((error) => this.reportError('sender', error));
    if (this.state.pairing === 'paired') this.afterPairing({ delayMs: 3000 });
    this.listen();
  }

  async readPairing() {
    const [token, revoked, device] = await Promise.all(['token', 'revoked', 'device'].map((k) => this.settings.get(k)));
    this.set({ pairing: revoked ? 'revoked' : token ? 'paired' : 'unpaired', device: device ?? null });
  }

  /** The officer's link: paired; or used/expired (said plainly, a phone paired before stays paired); or no network
   * (the code waits in IndexedDB and is tried again). */
  async pairWith(code) {
    this.set({ pairing: 'pairing', pairNotice: null });
    const { state } = await pair({ code, api: this.api, settings: this.settings });
    await this.readPairing();
    if (state === 'paired') {
      this.sender.status.revoked = false;
      this.sender.kick('start');
      this.afterPairing({ delayMs: 0 });
      this.set({ pairNotice: 'done' });
    } else if (state === 'used') {
      this.set({ pairNotice: 'used', ...(this.state.pairing === 'unpaired' ? { pairing: 'used' } : {}) });
    } else {
      this.set({ pairNotice: 'later' });
      setTimeout(() => this.retryPairing(), 30_000);
    }
  }

  async retryPairing() {
    const code = await this.settings.get('pairing_code');
    if (code) await this.pairWith(code);
  }

  /** In the background, once the first screen is up: the history from the server, the on-device model. */
  afterPairing({ delayMs }) {
    this.modelAttempt = new Promise((resolve) => {
      setTimeout(() => {
        syncHistory({ api: this.api, outbox: this.outbox }).then(() => this.refresh(), () => {});
        resolve(this.checkModel());
      }, delayMs);
    });
    clearInterval(this.modelTimer);
    this.modelTimer = setInterval(() => this.checkModel(), MODEL_CHECK_MS);
  }

  /** Brings the held build up to date and warms it (which also fetches and keeps onnxruntime-web's WASM). */
  checkModel() {
    if (this.state.pairing !== 'paired') return this.modelAttempt;
    this.modelAttempt = (async () => {
      this.set({ model: (await this.modelStore.current()) ? this.state.model : 'getting' });
      try {
        await this.modelStore.refresh();
      } catch (error) {
        if (error.kind === 'revoked') await this.sender.revoked().catch(() => {});
        else if (error.kind !== 'network') this.reportError('model', error);
        if (!(await this.modelStore.current())) setTimeout(() => this.checkModel(), MODEL_RETRY_MS);
      }
      if (!(await this.modelStore.current())) {
        this.set({ model: 'none' });
        return false;
      }
      try {
        await serviceWorkerInCharge(); // so that onnxruntime-web's files are fetched through it, and kept
        await this.phoneModel.session();
        this.set({ model: 'ready' });
        return true;
      } catch (error) { // an old phone without WASM SIMD, or no room: the server's answer will do
        this.reportError('model_load', error);
        this.set({ model: 'none' });
        return false;
      }
    })();
    return this.modelAttempt;
  }

  /** onnxruntime-web's files of an older version, kept by the service worker (CacheFirst, mhogo-ort-<version>). */
  async dropOldOrt() {
    const names = (await globalThis.caches?.keys?.()) ?? [];
    for (const name of names) if (name.startsWith('mhogo-ort-') && name !== `mhogo-ort-${__ORT_VERSION__}`) await caches.delete(name);
  }

  /** Settles when the model check under way (or the first one, a few seconds after start) does: true when the
   * phone can answer on its own. */
  modelReady() {
    return this.modelAttempt;
  }

  listen() {
    addEventListener('online', () => this.sender.kick('online'));
    document.addEventListener('visibilitychange', () => {
      this.sender.kick(document.visibilityState === 'visible' ? 'visible' : 'hidden');
      if (document.visibilityState === 'visible') this.readPairing();
    });
    addEventListener('error', (event) => this.reportError('window', event.error ?? event.message));
    addEventListener('unhandledrejection', (event) => this.reportError('promise', event.reason));
  }

  reportError(where, error) {
    console.error('mhogo:', where, error);
    if (this.errorsReported++ < MAX_ERRORS_REPORTED && this.events) this.events.error(where, error);
  }

  async refresh() {
    if (!this.outbox) return;
    const [photos, waiting, revoked] = await Promise.all([this.outbox.all(), this.outbox.count(), this.settings.get('revoked')]);
    const change = { photos, waiting, sender: { ...this.sender.status } };
    if (revoked) change.pairing = 'revoked';
    this.set(change);
  }

  async setLanguage(code, { remember = true } = {}) {
    const supported = this.languages.map((l) => l.code);
    const language = chooseLanguage(code, navigator.languages ?? [navigator.language], supported);
    let catalogue;
    try {
      catalogue = await loadCatalogue(language, this.fetchJson);
    } catch (error) {
      this.reportError('catalogue', error);
      return;
    }
    if (remember) await this.settings.set('language', catalogue.language);
    document.documentElement.lang = catalogue.language;
    document.title = `mhogo · ${catalogue.t('app.tagline')}`;
    this.set({ language: catalogue.language, catalogue });
  }

  select(photoId) {
    this.set({ selected: photoId });
  }

  /** A photo from the camera: made small, into the outbox (key made there), sent when it can be; the phone's own
   * answer meanwhile. */
  async capture(file) {
    this.set({ busyCapturing: true });
    let small;
    try {
      small = await downscale(file);
      const bytes = await small.blob.arrayBuffer();
      const photo = await this.outbox.capture({ bytes, type: 'image/jpeg', width: small.width, height: small.height, thumbnail: small.thumbnail });
      this.set({ selected: photo.id, pairNotice: null });
      await this.refresh();
      this.askToKeep();
      this.sender.kick('capture');
      this.phoneAnswer(photo, small.blob).catch((error) => this.reportError('phone_answer', error));
      return photo;
    } catch (error) {
      this.reportError('camera', error);
      return null;
    } finally {
      this.set({ busyCapturing: false });
    }
  }

  async askToKeep() {
    if (this.state.persisted !== null || !navigator.storage?.persist) return;
    const persisted = (await navigator.storage.persisted?.()) || (await navigator.storage.persist().catch(() => false));
    this.set({ persisted });
  }

  async phoneAnswer(photo, blob) {
    if (!(await this.modelStore.current())) return;
    const answer = await this.phoneModel.diagnose(await decodeRGB(blob));
    if (!answer) return;
    const now = await this.outbox.get(photo.id);
    const serverFirst = FINAL.includes(now.state) && now.state !== REFUSED;
    const { stats, probabilities, ...kept } = answer;
    await this.outbox.setPhoneAnswer(photo.id, { ...kept, shownAt: serverFirst ? null : Date.now() });
    if (!serverFirst) {
      await this.events.record('offline_answer_shown', {
        latency_ms: answer.latencyMs, model_ms: answer.modelMs ?? null, model_version: answer.modelVersion,
        precision: answer.precision, label: answer.label ?? null, reason: answer.reason ?? null,
        confidence: answer.confidence ?? null, offline: Boolean(this.sender.status.offline),
      }, now.jobId ?? null);
    }
    await this.refresh();
  }

  /** What the phone makes of a photo, without keeping or sending it: the downscaled JPEG it would send and the phone
   * model's answer on it (null without a model). For tests of parity with the server, and for looking closer. */
  async examine(file) {
    const small = await downscale(file);
    const answer = (await this.modelStore.current()) ? await this.phoneModel.diagnose(await decodeRGB(small.blob)) : null;
    return { jpeg: new Uint8Array(await small.blob.arrayBuffer()), width: small.width, height: small.height, answer };
  }

  /** The farmer's word on an answer: yes (the label shown), or the label picked from the pictures. */
  async feedback(photoId, label) {
    await this.outbox.addFeedback(photoId, label);
    await this.refresh();
    this.sender.kick('feedback');
  }
}
