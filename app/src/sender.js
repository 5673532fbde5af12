/**
 * The outbox's sender: takes photos, feedback and events out of the outbox and to the server, by itself. It runs at
 * start, when the page comes back to the front, on `online` (a hint only: navigator.onLine says true on a cell link
 * with no data), after every capture, and on its own timer: exponential backoff with full jitter when the link
 * fails, the server's Retry-After when it asks to wait (for the whole action), polling jobs until their answer.
 */

import { Holds, backoffDelay, LINK_BACKOFF, POLL_BACKOFF, UPLOAD_BACKOFF } from './backoff.js';
import { FAILED, FINAL } from './outbox.js';

const EVENTS_EVERY_MS = 30_000; // events wait this long to go together, unless many are waiting
const EVENTS_BATCH = 100;
const FEEDBACK_NOT_READY_MS = 20_000;

class Stop extends Error {} // ends a pass: the link is down or the phone was revoked

export class Sender {
  constructor({ outbox, settings, api, events, upload, now = Date.now, random = Math.random, timers = globalThis,
    locks = globalThis.navigator?.locks, onChange = () => {} }) {
    Object.assign(this, { outbox, settings, api, events, upload, now, random, timers, locks, onChange });
    this.recovered = false;
    this.holds = new Holds();
    this.linkFailures = 0;
    this.linkRetryAt = 0;
    this.eventsDueAt = null; // when the waiting events go; null: none waiting yet
    this.status = { offline: false, busy: false, sending: null, revoked: false };
    this.timer = null;
    this.running = null;
    this.again = false;
  }

  async start() {
    this.holds = new Holds((await this.settings.get('holds')) ?? {});
    this.status.revoked = Boolean(await this.settings.get('revoked'));
    return this.kick('start');
  }

  /** Try now. A sign that the network may be back (start, online, the app shown, a new photo) ends the link's wait,
   * not the server's Retry-After. */
  kick(reason = 'timer') {
    if (reason !== 'timer') this.linkRetryAt = 0;
    if (reason === 'hidden') this.eventsDueAt = this.now(); // the app may not come back: send what waits
    return this.run();
  }

  run() {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let wake;
      do {
        this.again = false;
        wake = await this.exclusivePass().catch((error) => {
          console.error('mhogo: sender pass failed', error);
          return this.now() + 60_000;
        });
      } while (this.again);
      this.schedule(wake);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  schedule(at) {
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    if (!Number.isFinite(at)) return;
    const delay = Math.min(2 ** 31 - 1, Math.max(250, at - this.now()));
    this.timer = this.timers.setTimeout(() => this.kick('timer'), delay);
    this.wakeAt = this.now() + delay;
  }

  stop() {
    this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  /** A pass while no other tab of the app runs one (Web Locks, where the browser has them): two tabs never send the
   * same photo at once, and a photo another tab is sending is not taken for one cut off by a closed app. */
  async exclusivePass() {
    if (!this.locks) return this.pass();
    const wake = await this.locks.request('mhogo-outbox', { ifAvailable: true }, (lock) => (lock ? this.pass() : null));
    return wake ?? this.now() + 30_000;
  }

  /** One pass over everything due; returns when to come back. The first pass puts back a photo that a closed app
   * left "sending". */
  async pass() {
    if (!this.recovered) {
      await this.outbox.recover();
      this.recovered = true;
    }
    if (this.status.revoked || !(await this.settings.get('token'))) return Infinity;
    if (this.now() < this.linkRetryAt) return this.linkRetryAt;
    try {
      await this.sendPhotos();
      await this.pollJobs();
      await this.sendFeedback();
      await this.sendEvents();
    } catch (error) {
      if (!(error instanceof Stop)) throw error;
      if (this.status.revoked) return Infinity;
    }
    return this.nextWake();
  }

  async nextWake() {
    const [uploads, polls, feedback, events] = await Promise.all([
      this.outbox.nextUploadTime(), this.outbox.nextPollTime(), this.outbox.nextFeedbackTime(), this.outbox.eventCount(),
    ]);
    const held = (action, at) => (Number.isFinite(at) ? Math.max(at, this.holds.heldUntil(action, this.now())) : at);
    const wake = Math.min(held('upload', uploads), held('poll', polls), held('feedback', feedback),
      events ? held('events', this.eventsDueAt ?? this.now() + EVENTS_EVERY_MS) : Infinity);
    return Number.isFinite(wake) ? Math.max(wake, this.linkRetryAt) : wake;
  }

  // What each kind of failure does (ApiError.kind, api.js).

  linkWorked() {
    this.linkFailures = 0;
    this.linkRetryAt = 0;
    if (this.status.offline || this.status.busy) this.setStatus({ offline: false, busy: false });
  }

  linkFailed() {
    this.linkRetryAt = this.now() + backoffDelay(this.linkFailures++, LINK_BACKOFF, this.random);
    this.setStatus({ offline: true });
    throw new Stop();
  }

  async revoked() {
    await this.settings.set('revoked', true);
    this.setStatus({ revoked: true });
    throw new Stop();
  }

  async toldToWait(action, error, jobId = null) {
    this.holds.hold(action, error.retryAfterMs, this.now());
    await this.settings.set('holds', this.holds.toJSON());
    await this.events.record('told_to_wait', { action, status: error.status, retry_after_s: Math.round(error.retryAfterMs / 1000) }, jobId);
    this.setStatus({ busy: true, offline: false });
  }

  setStatus(change) {
    Object.assign(this.status, change);
    this.onChange();
  }

  // Photos.

  async sendPhotos() {
    for (const due of await this.outbox.dueUploads(this.now())) {
      if (this.holds.heldUntil('upload', this.now())) return;
      const photo = await this.outbox.beginSend(due.id);
      if (!photo) continue;
      this.setStatus({ sending: photo.id });
      try {
        await this.sendPhoto(photo);
      } finally {
        this.setStatus({ sending: null });
      }
    }
  }

  async sendPhoto(photo) {
    const bytes = await this.outbox.bytes(photo.id);
    if (!bytes) { // cannot happen while it is in the outbox; if it does, say so rather than loop
      await this.outbox.refused(photo.id, 0, 'the photo was lost on the phone');
      await this.events.error('outbox', 'photo bytes missing');
      return;
    }
    const token = await this.settings.get('token');
    let result;
    try {
      result = await this.upload(photo, new Blob([bytes], { type: photo.type }), token);
    } catch (error) {
      await this.photoFailed(photo, error);
      return;
    }
    this.linkWorked();
    await this.outbox.sent(photo.id, result.jobId);
    const waited = this.now() - photo.takenAt;
    if (result.retries || photo.attempts > 1) {
      await this.events.record('upload_retried', { attempt: photo.attempts, tus_retries: result.retries, outcome: 'sent', waited_ms: waited, bytes: photo.size }, result.jobId);
    }
    if (result.resumes && result.resumedFrom > 0) {
      await this.events.record('upload_resumed', { resumes: result.resumes, offset: result.resumedFrom, bytes: photo.size, waited_ms: waited }, result.jobId);
    }
    this.onChange();
  }

  async photoFailed(photo, error) {
    const again = (at) => this.outbox.sendFailed(photo.id, at, error.message);
    const retried = (outcome) => this.events.record('upload_retried', {
      attempt: photo.attempts, tus_retries: error.retries ?? 0, outcome, status: error.status || null, bytes: photo.size,
    });
    switch (error.kind) {
      case 'network': // reported once it gets through (upload_retried with its attempts): not once a minute offline
        await again(0); // the link's wait (linkRetryAt) decides when, for every photo alike
        this.linkFailed();
        return;
      case 'revoked':
        await again(0);
        await this.revoked();
        return;
      case 'wait':
        await again(this.now() + error.retryAfterMs);
        await this.toldToWait('upload', error);
        return;
      case 'final':
        await this.outbox.refused(photo.id, error.status, error.message);
        await this.events.record('upload_refused', { status: error.status, detail: error.message, bytes: photo.size });
        this.onChange();
        return;
      default: // transient: this photo waits its own backoff, the others go on
        await again(this.now() + backoffDelay(photo.attempts - 1, UPLOAD_BACKOFF, this.random));
        await retried(error.kind);
        this.linkWorked();
    }
  }

  // Answers.

  async pollJobs() {
    for (const photo of await this.outbox.duePolls(this.now())) {
      if (this.holds.heldUntil('poll', this.now())) return;
      let job;
      try {
        job = await this.api.job(photo.jobId);
      } catch (error) {
        await this.pollFailed(photo, error);
        continue;
      }
      this.linkWorked();
      const next = this.now() + backoffDelay(photo.polls, POLL_BACKOFF, this.random);
      const updated = await this.outbox.polled(photo.id, job, next);
      if (updated && FINAL.includes(updated.state)) await this.answered(updated);
    }
  }

  async pollFailed(photo, error) {
    if (error.kind === 'network') this.linkFailed();
    if (error.kind === 'revoked') await this.revoked();
    if (error.kind === 'wait') {
      await this.toldToWait('poll', error, photo.jobId);
      await this.outbox.change(photo.id, null, { nextPollAt: this.now() + error.retryAfterMs });
    } else if (error.kind === 'final') { // not this phone's job (any more): nothing will ever come
      await this.outbox.change(photo.id, null, { state: FAILED, jobStatus: 'unknown' });
      await this.events.error('poll', error.message, null);
      this.onChange();
    } else {
      await this.outbox.change(photo.id, null, (p) => ({ polls: p.polls + 1, nextPollAt: this.now() + backoffDelay(p.polls, POLL_BACKOFF, this.random) }));
    }
  }

  /** The server's answer is in: if the phone had shown its own, say it was replaced and whether they agreed. */
  async answered(photo) {
    if (photo.phone?.shownAt) {
      await this.events.record('offline_answer_replaced', {
        phone_label: photo.phone.label ?? null, phone_reason: photo.phone.reason ?? null,
        server_label: photo.result?.label ?? null, server_reason: photo.rejection?.reason ?? null,
        same: (photo.phone.label ?? photo.phone.reason) === (photo.result?.label ?? photo.rejection?.reason),
        waited_ms: this.now() - photo.takenAt, model_version: photo.phone.modelVersion,
      }, photo.jobId);
    }
    this.onChange();
  }

  // Feedback.

  async sendFeedback() {
    for (const feedback of await this.outbox.dueFeedback(this.now())) {
      if (this.holds.heldUntil('feedback', this.now())) return;
      const photo = await this.outbox.get(feedback.photoId);
      if (!photo || photo.state === 'refused') {
        await this.outbox.feedbackDone(feedback.key); // no job will ever take it
        continue;
      }
      if (!photo.jobId || !FINAL.includes(photo.state)) {
        await this.outbox.feedbackFailed(feedback.key, this.now() + FEEDBACK_NOT_READY_MS);
        continue;
      }
      try {
        await this.api.feedback(photo.jobId, feedback.label, feedback.key);
      } catch (error) {
        await this.feedbackFailed(feedback, photo, error);
        continue;
      }
      this.linkWorked();
      await this.outbox.feedbackDone(feedback.key);
      this.onChange();
    }
  }

  async feedbackFailed(feedback, photo, error) {
    if (error.kind === 'network') {
      await this.outbox.feedbackFailed(feedback.key, 0);
      await this.events.record('feedback_retried', { attempt: feedback.attempts + 1, outcome: 'network' }, photo.jobId);
      this.linkFailed();
    }
    if (error.kind === 'revoked') await this.revoked();
    if (error.kind === 'wait') {
      await this.outbox.feedbackFailed(feedback.key, this.now() + error.retryAfterMs);
      await this.toldToWait('feedback', error, photo.jobId);
    } else if (error.kind === 'final') {
      await this.outbox.feedbackDone(feedback.key);
      await this.events.error('feedback', `${error.status} ${error.message}`, photo.jobId);
    } else {
      const attempts = await this.outbox.feedbackFailed(feedback.key, this.now() + backoffDelay(feedback.attempts, UPLOAD_BACKOFF, this.random));
      await this.events.record('feedback_retried', { attempt: attempts, outcome: error.kind, status: error.status || null }, photo.jobId);
    }
  }

  // Events.

  async sendEvents() {
    if (this.holds.heldUntil('events', this.now())) return;
    const count = await this.outbox.eventCount();
    if (!count) return;
    this.eventsDueAt ??= this.now() + EVENTS_EVERY_MS;
    if (this.now() < this.eventsDueAt && count < EVENTS_BATCH / 2) return;
    for (;;) {
      const batch = await this.outbox.eventBatch(EVENTS_BATCH);
      if (!batch.length) break;
      try {
        await this.api.events(batch);
      } catch (error) {
        if (error.kind === 'network') this.linkFailed();
        if (error.kind === 'revoked') await this.revoked();
        if (error.kind === 'wait') this.holds.hold('events', error.retryAfterMs, this.now());
        else if (error.kind === 'final') await this.outbox.removeEvents(batch.map((e) => e.event_id)); // would never pass
        else this.eventsDueAt = this.now() + EVENTS_EVERY_MS;
        return;
      }
      this.linkWorked();
      await this.outbox.removeEvents(batch.map((e) => e.event_id));
    }
    this.eventsDueAt = null;
  }
}
